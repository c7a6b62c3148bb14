"""A pull: retrieve a study from the PACS → keep its identity apart → the normal intake.

`pull_study` retrieves by DICOMweb (WADO-RS, stored transfer syntax) or DIMSE (C-MOVE to
our own AE); `intake_instances` is the shared second half: every instance's original
identifying header is captured first (`identity.capture_identity`), then each instance
goes through `medlens.jobs.intake.prepare` (decode, chest X-ray gate, de-identify) and
`submit_study` (store, queue one job). The identity is kept in its own table under the
new study's id. Idempotent: the study is keyed by a keyed hash of its Study Instance UID
(as the listener keys it), so pulling it twice gives one study and one job.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from medlens.errors import Conflict, ImageRefused, InvalidImage, MedLensError
from medlens.integrations.identity import capture_identity, merge_identities

if TYPE_CHECKING:
    from medlens.config import Settings

log = logging.getLogger("medlens.pacs")
Via = Literal["dicomweb", "dimse"]
AUDIT_ACTION = "integration.pull"


@dataclass(frozen=True)
class PullResult:
    study_id: str
    job_id: str | None
    created: bool  # False: the same study was already here (no second job)
    queued: bool
    images: int  # instances that became MedLens images
    refused: tuple[str, ...]  # why the others did not (gate, decoding...), no identifiers
    via: str
    seconds: float

    def line(self) -> str:
        state = "new study" if self.created else "already here"
        job = f", job {self.job_id}" if self.job_id else ""
        extra = f"; {len(self.refused)} refused: {'; '.join(self.refused)}" if self.refused else ""
        return (
            f"study {self.study_id} ({state}, {self.images} image(s){job}) via {self.via} "
            f"in {self.seconds:.1f} s{extra}"
        )


def retrieve(settings: Settings, study_uid: str, via: Via, node: str | None = None) -> list[bytes]:
    """The study's instances as Part 10 bytes, from the configured PACS."""
    if via == "dicomweb":
        from medlens.integrations import dicomweb

        return dicomweb.retrieve_study(settings, study_uid)
    from medlens.integrations import dimse
    from medlens.integrations.settings import dicom_node

    return dimse.move_study(settings, dicom_node(settings, node), study_uid)


def pull_study(
    store: Any,
    settings: Settings,
    study_uid: str,
    *,
    via: Via = "dicomweb",
    node: str | None = None,
    owner: str | None = None,
) -> PullResult:
    """Retrieve one study and take it in as a normal MedLens study with one job."""
    start = time.monotonic()
    instances = retrieve(settings, study_uid.strip(), via, node)
    result = intake_instances(store, settings, instances, source=via, owner=owner)
    result = PullResult(**{**result.__dict__, "seconds": time.monotonic() - start})
    log.info("pull: %s", result.line())
    return result


def _header(data: bytes) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
        raise InvalidImage(f"a retrieved instance is not readable DICOM ({exc}).") from None


def _order(instances: Sequence[bytes]) -> list[tuple[bytes, Any]]:
    """(bytes, header) per distinct instance, in series/instance order (stable positions)."""
    seen: dict[str, tuple[bytes, Any]] = {}
    for data in instances:
        header = _header(data)
        seen.setdefault(str(header.get("SOPInstanceUID", "")), (data, header))

    def key(item: tuple[bytes, Any]) -> tuple[int, int, str]:
        h = item[1]
        return (
            int(h.get("SeriesNumber") or 0),
            int(h.get("InstanceNumber") or 0),
            str(h.SOPInstanceUID),
        )

    return sorted(seen.values(), key=key)


def intake_instances(
    store: Any,
    settings: Settings,
    instances: Sequence[bytes],
    *,
    source: str = "pacs",
    owner: str | None = None,
    actor: str = "pacs",
) -> PullResult:
    """Take in ONE study's instances: identity apart, then intake (gate, de-identify,
    store, one job). A study already taken in (same Study Instance UID, however its
    bytes came) is not taken in again. ImageRefused when no instance is usable."""
    from medlens.integrations.autoingest import study_ref

    ordered = _order(instances)
    parts = [capture_identity(header) for _, header in ordered]  # DataError: unfileable
    identity = merge_identities(parts)  # DataError: not one study
    ref = study_ref(settings, identity["StudyInstanceUID"])
    key = f"dicom:{ref}"
    existing = store.find_study_by_key(key, owner=owner)
    if existing is not None:  # e.g. pulled before by the other protocol (other bytes)
        return _already_here(store, existing, source, ref, actor)
    prepared, refused, kept = _prepare_all(settings, ordered, identity)
    identity["instances"] = kept
    context = {"language": settings.language, "source": source}
    from medlens.jobs.intake import submit_study

    try:
        sub = submit_study(store, prepared, context, idempotency_key=key, owner=owner)
    except Conflict:  # a concurrent intake of the same study won
        found = store.find_study_by_key(key, owner=owner)
        if found is None:
            raise
        return _already_here(store, found, source, ref, actor)
    # Also when not created: a crash may have come between the study and its identity.
    if sub.created or store.get_study_identity(sub.study.id) is None:
        store.put_study_identity(sub.study.id, identity)
    detail = {"ref": ref, "via": source, "images": len(prepared), "refused": len(refused)}
    store.audit(actor, AUDIT_ACTION, study_id=sub.study.id, detail=detail)
    return PullResult(
        study_id=sub.study.id,
        job_id=sub.job.id if sub.job is not None else None,
        created=sub.created,
        queued=sub.queued,
        images=len(prepared),
        refused=tuple(refused),
        via=source,
        seconds=0.0,
    )


def _prepare_all(
    settings: Settings, ordered: list[tuple[bytes, Any]], identity: dict[str, Any]
) -> tuple[list[Any], list[str], list[dict[str, Any]]]:
    """prepare() each instance; the refusals; the kept instances' identities + position."""
    from medlens.jobs.intake import prepare

    prepared, refused, kept = [], [], []
    for index, (data, _header) in enumerate(ordered):
        try:
            prepared.append(prepare(data, len(prepared) + 1, settings))
        except MedLensError as exc:  # gate (CT, MR...), decoding, de-identification policy
            refused.append(f"instance {index + 1}: {exc}")
            continue
        kept.append({**identity["instances"][index], "position": len(prepared)})
    if not prepared:
        raise ImageRefused("No instance of the study can be interpreted: " + "; ".join(refused))
    return prepared, refused, kept


def _already_here(store: Any, study_id: str, source: str, ref: str, actor: str) -> PullResult:
    from medlens.jobs.intake import latest_job

    job = latest_job(store, study_id, "interpret")
    detail = {"ref": ref, "via": source, "already_here": True}
    store.audit(actor, AUDIT_ACTION, study_id=study_id, detail=detail)
    images = len(study.images) if (study := store.get_study(study_id)) is not None else 0
    return PullResult(
        study_id=study_id,
        job_id=job.id if job is not None else None,
        created=False,
        queued=False,
        images=images,
        refused=(),
        via=source,
        seconds=0.0,
    )
