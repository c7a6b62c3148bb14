"""Results back to the PACS (STOW-RS or C-STORE) and the EHR (FHIR), retried and audited.

`deliver_study` sends one integrated study's result objects to each configured target
(`dicom` per `settings.result_delivery`, `fhir` when `settings.fhir_url` is set). Each
target is tried with exponential backoff; its state is kept in the store
(`result_deliveries`: pending until the destination accepts, then delivered) and every
attempt is audited (who, what, where, outcome) without identifiers. A target that is not
configured is never contacted. Objects are rebuilt from the interpretation and the
protected identity each time; their UIDs are derived, so a retry re-sends the same SOP
instances and the PACS keeps one copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medlens.errors import MedLensError
from medlens.integrations.errors import IntegrationError, NotConfigured
from medlens.tasks.interpret.result import Interpretation

ACTOR = "medlens-delivery"


@dataclass
class DeliveryOutcome:
    delivered: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # target → last error

    @property
    def complete(self) -> bool:
        return not self.pending


class DeliveryPending(IntegrationError, code="result_pending_delivery", http_status=503):
    """The result is kept and will be sent again; the destination has not accepted it."""


def targets(settings: Any) -> list[str]:
    """The configured destinations (none configured → nothing is ever sent)."""
    out = []
    if settings.result_delivery in ("stow", "cstore"):
        out.append("dicom")
    if settings.fhir_url:
        out.append("fhir")
    return out


def _send_dicom(settings: Any, objects: list[Any]) -> dict[str, Any]:
    datasets = [o.dataset for o in objects]
    if settings.result_delivery == "stow":
        from medlens.integrations.dicomweb import store_instances
        from medlens.integrations.settings import dicomweb_url

        result = store_instances(settings, datasets)
        where = dicomweb_url(settings)
        return {"via": "stow", "where": where, "stored": result.stored}
    if settings.result_delivery == "cstore":
        from medlens.integrations.dimse import store
        from medlens.integrations.settings import dicom_node

        node = dicom_node(settings, settings.result_node)
        store(settings, node, datasets)
        return {"via": "cstore", "where": f"{node.ae_title}@{node.host}:{node.port}"}
    raise NotConfigured("Result delivery to the PACS is off (MEDLENS_RESULT_DELIVERY=none).")


def _send_fhir(settings: Any, interp: Interpretation, identity: dict[str, Any]) -> dict[str, Any]:
    from medlens.integrations.fhir_push import bundle, post_bundle, validate

    doc = bundle(interp, identity)
    validate(doc)  # never send what our own R4B models reject
    statuses = post_bundle(settings, doc)
    bad = [s for s in statuses if not s.startswith("2")]
    if bad:
        raise IntegrationError(f"FHIR transaction: {len(bad)} entr(ies) not created ({bad[0]}).")
    return {"via": "fhir", "where": settings.fhir_url, "entries": len(statuses)}


def _objects(settings: Any, interp: Interpretation, identity: dict[str, Any]) -> list[Any]:
    from medlens.integrations.results import result_objects, sources_from_identity

    # a GSPS only, when asked: an SC would need pixels, and the store keeps only
    # de-identified ones
    return result_objects(
        interp,
        sources_from_identity(identity),
        sr_kind=settings.sr_kind,
        overlay=settings.result_overlay,
    )


def deliver_study(
    store: Any,
    settings: Any,
    study_id: str,
    *,
    actor: str = ACTOR,
    attempts: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], Any] = time.sleep,
) -> DeliveryOutcome:
    """Send the study's stored interpretation to every configured target not yet done."""
    outcome = DeliveryOutcome()
    wanted = targets(settings)
    interp = store.get_interpretation(study_id)
    identity = store.get_study_identity(study_id)
    if not wanted or interp is None or identity is None:
        return outcome  # nothing configured, nothing to send, or not an integrated study
    done = {d.target for d in store.list_deliveries(study_id=study_id, status="delivered")}
    for target in wanted:
        if target in done:
            outcome.delivered.append(target)
            continue
        error = _try(store, settings, study_id, target, interp, identity, actor, attempts,
                     backoff_s, sleep)  # fmt: skip
        if error is None:
            outcome.delivered.append(target)
        else:
            outcome.pending[target] = error
    return outcome


def _try(store, settings, study_id, target, interp, identity, actor, attempts, backoff_s, sleep):
    """Up to `attempts` tries with doubling waits; None when delivered, else the error."""
    error = ""
    for n in range(max(1, attempts)):
        if n:
            sleep(backoff_s * 2 ** (n - 1))
        try:
            if target == "dicom":
                objects = _objects(settings, interp, identity)
                detail = _send_dicom(settings, objects)
                detail["objects"] = [f"{o.kind}:{o.modality}" for o in objects]
                detail["sop_instance_uids"] = [o.sop_instance_uid for o in objects]
            else:
                detail = _send_fhir(settings, interp, identity)
        except MedLensError as exc:
            error = str(exc).splitlines()[0][:300]
            store.set_delivery(study_id, target, "pending", attempted=True, error=error)
            store.audit(actor, f"result.deliver.{target}", study_id=study_id,
                        outcome="error", detail={"attempt": n + 1, "error": error})  # fmt: skip
            continue
        store.set_delivery(study_id, target, "delivered", attempted=True, detail=detail)
        audit = {k: v for k, v in detail.items() if k != "sop_instance_uids"}
        store.audit(actor, f"result.deliver.{target}", study_id=study_id, outcome="ok",
                    detail={"attempt": n + 1, **audit})  # fmt: skip
        return None
    return error


def mark_pending(store: Any, settings: Any, study_id: str) -> list[str]:
    """Record that the study's results await delivery (called when an interpretation of an
    integrated study completes); the configured targets, empty when none."""
    wanted = targets(settings)
    if wanted and store.get_study_identity(study_id) is not None:
        for target in wanted:
            store.set_delivery(study_id, target, "pending")
        return wanted
    return []
