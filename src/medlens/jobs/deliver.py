"""The `deliver` job: an interpreted integrated study's results to the PACS and FHIR.

Queued when an interpretation of an integrated study completes (handlers.py). The job
stays running with the stage "result pending delivery" while a destination is down,
retrying with doubling waits (cancellable), and finishes when every configured target
accepted. If it gives up, the delivery rows stay `pending` and `requeue_pending`
queues a new job later (e.g. after a restart), so no result is lost.
"""

from __future__ import annotations

from typing import Any

from medlens.store.base import Job

WAIT_FOR_RESULT_S = 30.0  # the interpret job commits its result just after queueing this
MAX_WAIT_S = 300.0


def handle_deliver(job: Job, ctx: Any) -> dict[str, Any]:
    from medlens.integrations.delivery import DeliveryPending, deliver_study

    study_id = job.study_id or str(job.payload.get("study_id", ""))
    waited = 0.0
    while ctx.store.get_interpretation(study_id) is None:
        if ctx.store.get_study(study_id) is None:
            return {"skipped": "study deleted"}
        if waited >= WAIT_FOR_RESULT_S or ctx.wait_cancelled(0.2):
            raise DeliveryPending("No stored interpretation to deliver yet.")
        waited += 0.2
    rounds = int(job.payload.get("rounds", 8))
    wait = float(job.payload.get("backoff_s", 2.0))
    outcome = None
    for n in range(max(1, rounds)):
        ctx.progress(min(0.95, 0.1 + n / max(rounds, 1)), "Delivering results")
        outcome = deliver_study(ctx.store, ctx.settings, study_id, attempts=1)
        if outcome.complete:
            ctx.progress(1.0, "Results delivered")
            return {"delivered": outcome.delivered}
        why = "; ".join(f"{t}: {e}" for t, e in outcome.pending.items())
        ctx.progress(0.1, f"Result pending delivery ({why}); next try in {wait:g}s")
        if n + 1 < rounds and ctx.wait_cancelled(wait):
            break
        wait = min(wait * 2, MAX_WAIT_S)
    pending = ", ".join(outcome.pending) if outcome else "all"
    raise DeliveryPending(f"Result pending delivery to {pending}; it will be sent again.")


def queue_delivery(store: Any, settings: Any, study_id: str, **payload: Any) -> Any:
    """Mark the study's results pending and queue a `deliver` job (None: nothing to send)."""
    from medlens.integrations.delivery import mark_pending

    if not mark_pending(store, settings, study_id):
        return None
    return store.enqueue_job("deliver", dict(payload), study_id=study_id)


def requeue_pending(store: Any) -> list[str]:
    """Queue a `deliver` job for each study with pending results and no live job."""
    live = [*store.list_jobs(status="queued", limit=1000), *store.list_jobs(status="running")]
    busy = {j.study_id for j in live if j.kind == "deliver"}
    studies = sorted({d.study_id for d in store.list_deliveries(status="pending")} - busy)
    for study_id in studies:
        store.enqueue_job("deliver", {}, study_id=study_id)
    return studies
