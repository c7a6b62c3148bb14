"""Adding cases to a library: ingest, de-identify, store blobs, embed (cached by pixel hash).

Every image goes through the imaging front door (`medlens.imaging.ingest.ingest` with the
site's de-identification policy); only the de-identified file and a small thumbnail are
stored, as content-addressed blobs under settings.images_dir.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.errors import ConfigError, MedLensError, NotFound
from medlens.tasks.encoding import encoder_id as encoder_key
from medlens.tasks.encoding import image_parts
from medlens.tasks.retrieval.cases_csv import CaseInput
from medlens.tasks.retrieval.vector_index import normalise_rows

if TYPE_CHECKING:
    from medlens.models.protocols import Encoder
    from medlens.models.registry import ModelRecord
    from medlens.tasks.retrieval.library import CaseLibrary
    from medlens.tasks.retrieval.tables import LibraryDB

THUMBNAIL_PX = 160
EMBED_BATCH = 16


@dataclass
class AddReport:
    added: int = 0
    embedded: int = 0  # vectors computed now
    cached: int = 0  # vectors found in the cache (same pixels, same encoder)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (case_id, reason)


def thumbnail_png(image: Any) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")  # pixels only: no metadata chunks
    return buf.getvalue()


def add_cases(
    lib: CaseLibrary,
    encoder: Encoder,
    record: ModelRecord,
    cases: Sequence[CaseInput],
    progress: Callable[[int, int], None] | None,
) -> AddReport:
    """Ingest, de-identify, embed and store `cases` in `lib` (the caller holds its lock)."""
    from medlens.imaging.deid import DeidPolicy
    from medlens.imaging.ingest import ingest
    from medlens.store.blobs import BlobStore

    lib.use_encoder(encoder)
    blobs = BlobStore(lib.settings.images_dir)
    policy = DeidPolicy.from_settings(lib.settings)
    report = AddReport()
    for start in range(0, len(cases), EMBED_BATCH):
        batch = cases[start : start + EMBED_BATCH]
        rows: list[dict[str, Any]] = []
        ingested = []
        for case in batch:
            try:
                img = ingest(case.path, deid=policy)
                if img.volume is not None:
                    raise MedLensError("a CT/MR volume, not a single image")
                stored = img.deidentified_bytes
                if stored is None:  # older ingest without de-id output: pixels only
                    from medlens.imaging.deid import strip_raster

                    stored = strip_raster(img.image)
                rows.append(
                    {
                        "case_id": case.case_id,
                        "filename": case.path.name,
                        "image_sha256": blobs.put(stored),
                        "pixel_sha256": img.pixel_sha256,
                        "labels": case.labels,
                        "report": case.report,
                        "thumbnail": blobs.put(thumbnail_png(img.image)),
                        "source": case.source,
                    }
                )
                ingested.append(img)
            except MedLensError as exc:
                report.failed.append((case.case_id, str(exc)))
        embed_into_cache(lib.db, encoder, record, ingested, report)
        report.added += lib.db.upsert_cases(lib.name, rows)
        if progress is not None:
            progress(min(start + len(batch), len(cases)), len(cases))
    return report


def embed_missing(lib: CaseLibrary, encoder: Encoder, record: ModelRecord) -> AddReport:
    """Embed `lib`'s stored cases that have no vector for `encoder` (from their blobs)."""
    from medlens.imaging.ingest import ingest
    from medlens.store.blobs import BlobStore

    lib.use_encoder(encoder)
    enc_id = encoder_key(encoder)
    blobs = BlobStore(lib.settings.images_dir)
    report = AddReport()
    rows = lib.db.cases(lib.name)
    have = lib.db.cached_vectors([r.pixel_sha256 for r in rows], enc_id)
    missing = [r for r in rows if r.pixel_sha256 not in have]
    for start in range(0, len(missing), EMBED_BATCH):
        imgs = []
        for r in missing[start : start + EMBED_BATCH]:
            try:
                imgs.append(ingest(blobs.read(r.image_sha256), name=r.filename))
            except (MedLensError, NotFound) as exc:
                report.failed.append((r.case_id, str(exc)))
        embed_into_cache(lib.db, encoder, record, imgs, report)
    if report.embedded:
        lib.db.bump_generation(lib.name)  # new vectors: loaded indexes are stale
    return report


def embed_into_cache(
    db: LibraryDB, encoder: Encoder, record: ModelRecord, ingested: list[Any], report: AddReport
) -> None:
    """Embed the images whose pixels have no vector for this encoder yet, and store them."""
    enc_id = encoder_key(encoder)
    cached = db.cached_vectors([i.pixel_sha256 for i in ingested], enc_id)
    todo = {i.pixel_sha256: i for i in ingested if i.pixel_sha256 not in cached}
    report.cached += len(ingested) - len(todo)
    if not todo:
        return
    imgs = list(todo.values())
    emb = np.asarray(encoder.embed_images(image_parts(imgs, record.preprocess)), np.float32)
    if emb.shape != (len(imgs), encoder.dim):
        raise ConfigError(f"Encoder returned {emb.shape}, expected ({len(imgs)}, {encoder.dim}).")
    emb = normalise_rows(emb)
    db.put_vectors(enc_id, {i.pixel_sha256: emb[j] for j, i in enumerate(imgs)})
    report.embedded += len(imgs)
