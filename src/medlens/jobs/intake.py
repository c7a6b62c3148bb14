"""Intake: bytes → validated, gated, de-identified image → stored study → queued job.

The one way in for the page and the API (server/services/studies.py), `medlens batch`
(jobs/batch.py) and any future listener (a PACS receiver...). The original upload is
never written anywhere: it is decoded in memory (which is what catches truncated files
at upload time), checked by the chest X-ray gate, then de-identified; only the
de-identified bytes become a blob. PNG/JPEG are re-encoded from their decoded pixels as
PNG, which drops EXIF, text chunks and ICC profiles. The upload's file name is never
kept either (names like `Doe_John_DOB….dcm` carry PHI): images are "image 1", "image 2"…
in upload order, in the database, the interpretation and every response.

Each image is decoded once: the de-identified pixels decoded at upload are kept beside
the blob (a lossless `DecodedImage`) and in a small in-memory cache keyed by the blob's
content hash, so the job and every image view work from them without decoding the file
again. An image stored before that copy existed is decoded once, on first use, and its
copy written then.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from medlens.config import Settings
from medlens.errors import InvalidImage
from medlens.imaging.decoded import DecodedCache, DecodedImage
from medlens.imaging.types import IngestedImage
from medlens.store.base import Job, NewImage, StoredImage, Study

DECODED_KIND = "pixels"  # the blob store's derived-file name for a DecodedImage
DECODED = DecodedCache()  # process-wide: the job threads and the image views share it

_flights_lock = threading.Lock()
_flights: dict[str, list[Any]] = {}  # key -> [lock, users]


def display_name(position: int) -> str:
    """What an upload is called everywhere: its place in the upload, never its file name."""
    return f"image {position}"


@dataclass(frozen=True)
class PreparedImage:
    new: NewImage  # with `data`: the de-identified bytes that become the blob
    warnings: tuple[str, ...]
    decoded: DecodedImage  # the de-identified pixels, decoded once


@dataclass(frozen=True)
class Submission:
    study: Study
    created: bool  # False: the same upload (key or image set) was already stored
    job: Job | None  # the study's latest job of the kind (None: none and none queued)
    queued: bool  # True when this submission queued that job


def _ingest(data: bytes, name: str, settings: Settings) -> IngestedImage:
    """One pass: decode, validate and (with the policy) de-identify before any metadata
    is read, so descriptions and tags shown later come from the de-identified data."""
    from medlens.imaging.deid import DeidPolicy
    from medlens.imaging.ingest import ingest

    return ingest(
        data,
        name=name,
        max_pixels=settings.max_image_pixels,
        deid=DeidPolicy.from_settings(settings),
        keep_values=True,
    )


def _stored_bytes(ingested: IngestedImage) -> bytes:
    if ingested.deidentified_bytes is None:  # never store what was not de-identified
        from medlens.errors import DeidentificationBlocked

        raise DeidentificationBlocked(
            f"{ingested.source_name or 'image'}: could not be de-identified, so it is not stored."
        )
    return ingested.deidentified_bytes


def prepare(data: bytes, position: int, settings: Settings) -> PreparedImage:
    """Decode, gate and de-identify the upload's `position`-th image (1-based; ImageRefused
    → 422 for what is plainly no chest X-ray: CT/MR, blank, photo...). Nothing is written
    yet. The client's file name is not taken at all (PHI): see `display_name`."""
    import hashlib

    from medlens.imaging.gate import require_chest_xray

    name = display_name(position)
    ingested = _ingest(data, name, settings)
    gate = require_chest_xray(ingested)
    warnings = [*ingested.warnings, *gate.warnings]
    blob = _stored_bytes(ingested)
    meta = ingested.metadata
    metadata: dict[str, Any] = {
        "modality": meta.modality,
        "body_part": meta.body_part,
        "view_position": meta.view_position,
        "rows": meta.rows,
        "columns": meta.columns,
        "frames": meta.frames,
        "source_format": ingested.format,
        "description": meta.description,
        "warnings": warnings,
        "pixel_gate": gate.to_dict(),  # the job's gate stage reuses it (runs the model half only)
    }
    new = NewImage(
        sha256=hashlib.sha256(blob).hexdigest(),
        pixel_sha256=ingested.pixel_sha256,
        format="dicom" if ingested.format == "dicom" else "png",  # PNG/JPEG → PNG
        filename=name,
        metadata={k: v for k, v in metadata.items() if v not in (None, [], "")},
        data=blob,
    )
    return PreparedImage(new, tuple(warnings), DecodedImage.from_ingested(ingested))


def latest_job(store: Any, study_id: str, kind: str | None = None) -> Job | None:
    jobs = store.list_jobs(study_id=study_id, limit=1000)
    jobs = [j for j in jobs if kind is None or j.kind == kind]
    return max(jobs, key=lambda j: (j.created_at, j.id)) if jobs else None


def submit_study(
    store: Any,
    prepared: Sequence[PreparedImage],
    context: dict[str, Any],
    *,
    kind: str = "interpret",
    idempotency_key: str | None = None,
    owner: str | None = None,
) -> Submission:
    """Store the study (or find the same one) and queue its job unless one is queued,
    running or done. Re-submitting the same images is safe: same study, no second job."""
    study, created = store.create_study(
        [p.new for p in prepared], context, idempotency_key=idempotency_key, owner=owner
    )
    for p in prepared:
        keep_decoded(store.blobs, p.new.sha256, p.decoded)
    job = latest_job(store, study.id, kind)
    needs_job = created or (
        (job is None or job.status == "failed")
        and not (kind == "interpret" and store.get_interpretation(study.id) is not None)
    )
    if needs_job:
        job = store.enqueue_job(kind, {"language": context.get("language")}, study_id=study.id)
    return Submission(study, created, job, needs_job)


def keep_decoded(blobs: Any, sha256: str, decoded: DecodedImage) -> None:
    """Cache the decoded pixels and write their copy beside the (existing) blob."""
    DECODED.put(sha256, decoded)
    if blobs is None or blobs.read_derived(sha256, DECODED_KIND) is not None:
        return
    with contextlib.suppress(OSError):  # only a cache: the original stays decodable
        blobs.put_derived(sha256, DECODED_KIND, decoded.to_bytes())
        if not blobs.exists(sha256):  # the study went meanwhile: leave nothing behind
            blobs.delete(sha256)


def decoded_image(blobs: Any, image: StoredImage) -> DecodedImage:
    """A stored image's decoded pixels: from the cache, else from the copy beside the
    blob, else (stored before copies existed, or a damaged copy) decoded once."""
    found = DECODED.get(image.sha256)
    if found is not None:
        return found
    with _flight(image.sha256):  # concurrent views of one image decode it once
        found = DECODED.get(image.sha256)
        if found is not None:
            return found
        raw = blobs.read_derived(image.sha256, DECODED_KIND)
        if raw is not None:
            with contextlib.suppress(InvalidImage):
                found = DecodedImage.from_bytes(raw)
                DECODED.put(image.sha256, found)
                return found
        found = _decode_blob(blobs, image)
        keep_decoded(blobs, image.sha256, found)
        return found


def _decode_blob(blobs: Any, image: StoredImage) -> DecodedImage:
    from medlens.imaging.ingest import ingest

    data = blobs.read(image.sha256)
    return DecodedImage.from_ingested(ingest(data, name=image.filename, keep_values=True))


def task_image(blobs: Any, image: StoredImage) -> IngestedImage:
    """The task-level image of a stored one (what the job works on), without a decode."""
    decoded = decoded_image(blobs, image)
    return decoded.to_ingested(sha256=image.sha256, source_name=image.filename)


@contextlib.contextmanager
def _flight(key: str) -> Iterator[None]:
    # One lock per key while anyone uses it (a count, so the last one out removes it).
    with _flights_lock:
        entry = _flights.setdefault(key, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _flights_lock:
            entry[1] -= 1
            if entry[1] == 0:
                _flights.pop(key, None)
