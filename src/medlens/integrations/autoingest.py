"""A received study → rules → identity kept apart → the normal intake → one job.

Used by `medlens listen` (instances from the spool) and the Orthanc `/changes` poller
(instances pulled from the PACS). The rules decide per instance; what passes goes through
the pull's second half (`medlens.integrations.pull.intake_instances`): the original
identifying header is captured before de-identification and kept apart, keyed by the
MedLens study id, and the normal store only sees what `intake.prepare` de-identified.

Idempotent: the study is keyed by a keyed hash of its Study Instance UID, so the same
study sent twice (or ingested again after a crash) is the same MedLens study with its one
job; instances that arrive after the study was taken in are not interpreted again (the
audit says so). Every decision (queued, duplicate, skipped by a rule, refused by the gate)
is written to the audit log with its reason and no patient identifier; a study turned
away also gets a failed `auto-interpret` job whose error is the reason (job list).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from medlens.config import Settings
from medlens.errors import MedLensError
from medlens.integrations.rules import AutoRule

log = logging.getLogger("medlens.listen")
AUDIT_ACTION = "integration.auto_interpret"
REFUSED_KIND = "auto-interpret"  # the job row of a study not interpreted (rule or gate)
Status = Literal["queued", "duplicate", "skipped", "refused", "late"]


@dataclass
class IngestOutcome:
    status: Status
    ref: str  # keyed hash of the Study Instance UID: names the study in logs, not the patient
    study_id: str | None = None
    job_id: str | None = None
    reasons: list[str] = field(default_factory=list)
    instances: int = 0  # how many became MedLens images
    actor: str = ""  # who took it in (the listener, the poller)

    def line(self) -> str:
        where = f" study={self.study_id} job={self.job_id}" if self.study_id else ""
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return f"{self.status} ref={self.ref}{where}{why}"


def study_ref(settings: Settings, study_uid: str) -> str:
    """A stable, non-identifying name for a DICOM study (keyed with the site secret)."""
    from medlens.imaging.deid import site_secret

    digest = hmac.new(site_secret(settings), study_uid.encode(), hashlib.sha256)
    return digest.hexdigest()[:24]


def read_header(data: bytes) -> Any:
    """The DICOM header of an instance (no pixels); InvalidImage when it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from medlens.errors import InvalidImage

    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
        raise InvalidImage(f"not a readable DICOM instance: {exc}") from None


def ingest_study(
    store: Any,
    settings: Settings,
    instances: Sequence[bytes],
    *,
    actor: str,
    skipped: Sequence[str] = (),
) -> IngestOutcome:
    """Take in the instances of ONE study; `skipped`: reasons for instances the caller
    already turned away (the listener applies the rules at receipt)."""
    rule = AutoRule.from_settings(settings)
    headers = [read_header(data) for data in instances]
    uids = {str(h.get("StudyInstanceUID", "")) for h in headers}
    if len(uids) != 1 or "" in uids:
        raise MedLensError("the instances given are not one study (Study Instance UID)")
    out = IngestOutcome("skipped", study_ref(settings, uids.pop()), reasons=list(skipped))
    out.actor = actor
    accepted = []
    for data, header in zip(instances, headers, strict=True):
        decision = rule.check(header)
        if decision.accept:
            accepted.append((data, header))
        else:
            out.reasons.append(decision.reason)
    out.reasons = sorted(set(out.reasons))
    if accepted:
        _take_in(store, settings, accepted, out)
    record_outcome(store, settings, actor, out)
    log.info("auto-interpret: %s", out.line())
    return out


def _take_in(
    store: Any, settings: Settings, accepted: list[tuple[bytes, Any]], out: IngestOutcome
) -> None:
    """The pull's second half (`pull.intake_instances`): identity apart, gate, intake."""
    from medlens.errors import ImageRefused
    from medlens.integrations.errors import IntegrationError
    from medlens.integrations.pull import intake_instances

    try:
        result = intake_instances(
            store, settings, [data for data, _ in accepted], source="listen", actor=out.actor
        )
    except ImageRefused as exc:  # the imaging gate, decoding, de-identification policy
        out.status = "refused"
        out.reasons = sorted({*out.reasons, str(exc)})
        return
    except IntegrationError as exc:  # taken in before with other instances: not again
        out.status = "late"
        out.reasons = sorted({*out.reasons, str(exc)})
        return
    out.study_id, out.job_id, out.instances = result.study_id, result.job_id, result.images
    out.status = "queued" if result.created or result.queued else "duplicate"
    out.reasons = sorted({*out.reasons, *result.refused})


def record_outcome(store: Any, settings: Settings, actor: str, out: IngestOutcome) -> None:
    """Audit the decision; a study turned away by a rule or the gate also gets a failed
    `auto-interpret` job carrying the reason, so the job list says why it was not read."""
    if out.status in ("skipped", "refused") and settings.auto_interpret.enabled:
        # No handler claims this kind, and it fails at once: nothing runs, the row stays.
        job = store.enqueue_job(REFUSED_KIND, {"ref": out.ref, "status": out.status,
                                               "reasons": out.reasons, "actor": actor})  # fmt: skip
        store.fail_job(job.id, f"Not interpreted ({out.status}): " + "; ".join(out.reasons))
        out.job_id = job.id
    outcome = "ok" if out.status in ("queued", "duplicate") else out.status
    detail = {"ref": out.ref, "status": out.status, "reasons": out.reasons}
    if out.job_id:
        detail["job_id"] = out.job_id
    store.audit(actor, AUDIT_ACTION, study_id=out.study_id, outcome=outcome, detail=detail)
