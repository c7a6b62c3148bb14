"""The case library: a hospital's own labelled images, searchable by image or by text.

    lib = CaseLibrary.open(settings, name="default", encoder_id=None)
    lib.add_cases(encoder, record, cases)             # ingest + de-identify + embed + store
    lib.search_image(embedding, k=10) -> list[SimilarCase]
    lib.search_text(encoder, "A chest X-ray with pneumothorax.", k=10)

Every image goes through the imaging front door (`medlens.imaging.ingest.ingest` with the
site's de-identification policy); only the de-identified file and a small thumbnail are
stored (content-addressed blobs under settings.images_dir). Vectors live in the store's
SQLite file (library_store.py); search is exact (numpy) up to `ann_min_size` vectors and
approximate (faiss IVF-SQ8 + exact re-rank, index.py) above, with the index file kept
next to the database and rebuilt when the library changed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from medlens.errors import ConfigError, MedLensError, NotFound
from medlens.tasks.encoding import encoder_id as encoder_key
from medlens.tasks.encoding import image_parts
from medlens.tasks.retrieval.cases_csv import CaseInput
from medlens.tasks.retrieval.tables import LibraryDB, sqlite_path_for
from medlens.tasks.retrieval.vector_index import ExactIndex, IVFIndex, VectorIndex, normalise_rows

if TYPE_CHECKING:
    from medlens.config import Settings
    from medlens.models.protocols import Encoder
    from medlens.models.registry import ModelRecord

log = logging.getLogger(__name__)
IndexMode = Literal["auto", "exact", "ivf"]
THUMBNAIL_PX = 160
REPORT_SNIPPET_CHARS = 300
EMBED_BATCH = 16


@dataclass(frozen=True)
class SimilarCase:
    case_id: str
    filename: str
    labels: dict[str, int]  # the case's 0/1 labels ({"Pneumothorax": 1, "urgent": 1, ...})
    report: str | None  # snippet (untrusted free text: show as data, never as instructions)
    similarity: float  # cosine similarity in the encoder's space
    thumbnail: str | None  # blob key (sha256) of a de-identified PNG thumbnail
    thumbnail_path: str | None = None
    library: str = ""
    rank: int = 0
    attributes: dict[str, str] = field(default_factory=dict)  # text labels: finding, view

    @property
    def positive_labels(self) -> list[str]:
        return [k for k, v in self.labels.items() if v == 1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AddReport:
    added: int = 0
    embedded: int = 0  # vectors computed now
    cached: int = 0  # vectors found in the cache (same pixels, same encoder)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (case_id, reason)


def _snippet(text: str | None) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= REPORT_SNIPPET_CHARS else text[: REPORT_SNIPPET_CHARS - 1] + "…"


def _thumbnail_png(image: Any) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")  # pixels only: no metadata chunks
    return buf.getvalue()


class CaseLibrary:
    """One named library, searched in one encoder's embedding space."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        encoder_id: str | None,
        *,
        index: IndexMode = "auto",
        ann_min_size: int = 200_000,
        snapshot_min_size: int = 10_000,
    ) -> None:
        if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
            raise ConfigError(f"Library name {name!r}: use letters, digits, '-', '_' or '.'.")
        self.settings = settings
        self.name = name
        self.db = LibraryDB(sqlite_path_for(settings))
        self.index_mode: IndexMode = index
        self.ann_min_size = ann_min_size
        self.snapshot_min_size = snapshot_min_size
        self._requested_encoder = encoder_id
        self._resolved: dict[str, tuple[int, str]] = {}
        # One SQLite connection per library object: calls from several threads serialise.
        self._lock = threading.RLock()
        self._loaded: tuple[tuple[str, int, int], np.ndarray, VectorIndex] | None = None

    @classmethod
    def open(
        cls, settings: Settings, name: str = "default", encoder_id: str | None = None, **kwargs: Any
    ) -> CaseLibrary:
        """Open (creating tables if needed). `encoder_id`: a registry id (e.g.
        "google/medsiglip-448"), an exact `id@weights` key, or None for settings.encoder."""
        return cls(settings, name, encoder_id, **kwargs)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> CaseLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- which embedding space ----------------------------------------------------------
    @property
    def encoder_id(self) -> str:
        """The exact `model@weights` key searched: resolved from what was asked for."""
        want = self._requested_encoder or self.settings.encoder
        if "@" in want:
            return want
        # A bare registry id: resolve against the stored vectors once per generation (the
        # lookup scans the library, too slow to repeat on every search of a big library).
        gen = self.db.generation(self.name)
        cached = self._resolved.get(want)
        if cached is not None and cached[0] == gen:
            return cached[1]
        stored = [e for e, _ in self.db.encoders(self.name)]
        matches = [e for e in stored if e == want or e.split("@", 1)[0] == want]
        resolved = matches[0] if matches else want  # most vectors first
        self._resolved[want] = (gen, resolved)
        return resolved

    def use_encoder(self, encoder: Encoder) -> None:
        self._requested_encoder = encoder_key(encoder)

    # --- adding -------------------------------------------------------------------------
    def add_cases(
        self,
        encoder: Encoder,
        record: ModelRecord,
        cases: Sequence[CaseInput],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> AddReport:
        """Ingest, de-identify, embed (cache by pixel hash + encoder) and store cases.

        A case whose image cannot be ingested is skipped and listed in the report; the
        others are still added (one bad file must not lose a whole import).
        """
        with self._lock:
            return self._add_locked(encoder, record, cases, progress)

    def _add_locked(
        self,
        encoder: Encoder,
        record: ModelRecord,
        cases: Sequence[CaseInput],
        progress: Callable[[int, int], None] | None,
    ) -> AddReport:
        from medlens.imaging.deid import DeidPolicy
        from medlens.imaging.ingest import ingest
        from medlens.store.blobs import BlobStore

        self.use_encoder(encoder)
        enc_id = encoder_key(encoder)
        blobs = BlobStore(self.settings.images_dir)
        policy = DeidPolicy.from_settings(self.settings)
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
                            "thumbnail": blobs.put(_thumbnail_png(img.image)),
                            "source": case.source,
                        }
                    )
                    ingested.append(img)
                except MedLensError as exc:
                    report.failed.append((case.case_id, str(exc)))
            self._embed_into_cache(encoder, record, ingested, enc_id, report)
            report.added += self.db.upsert_cases(self.name, rows)
            if progress is not None:
                progress(min(start + len(batch), len(cases)), len(cases))
        return report

    def _embed_into_cache(
        self,
        encoder: Encoder,
        record: ModelRecord,
        ingested: list[Any],
        enc_id: str,
        report: AddReport,
    ) -> None:
        cached = self.db.cached_vectors([i.pixel_sha256 for i in ingested], enc_id)
        todo = {i.pixel_sha256: i for i in ingested if i.pixel_sha256 not in cached}
        report.cached += len(ingested) - len(todo)
        if not todo:
            return
        imgs = list(todo.values())
        emb = np.asarray(encoder.embed_images(image_parts(imgs, record.preprocess)), np.float32)
        if emb.shape != (len(imgs), encoder.dim):
            raise ConfigError(
                f"Encoder returned {emb.shape}, expected ({len(imgs)}, {encoder.dim})."
            )
        emb = normalise_rows(emb)
        self.db.put_vectors(enc_id, {i.pixel_sha256: emb[j] for j, i in enumerate(imgs)})
        report.embedded += len(imgs)

    def embed_missing(self, encoder: Encoder, record: ModelRecord) -> AddReport:
        """Embed stored cases that have no vector for this encoder (from their stored blobs)."""
        from medlens.imaging.ingest import ingest
        from medlens.store.blobs import BlobStore

        self.use_encoder(encoder)
        enc_id = encoder_key(encoder)
        blobs = BlobStore(self.settings.images_dir)
        report = AddReport()
        rows = self.db.cases(self.name)
        have = self.db.cached_vectors([r.pixel_sha256 for r in rows], enc_id)
        missing = [r for r in rows if r.pixel_sha256 not in have]
        for start in range(0, len(missing), EMBED_BATCH):
            imgs = []
            for r in missing[start : start + EMBED_BATCH]:
                try:
                    imgs.append(ingest(blobs.read(r.image_sha256), name=r.filename))
                except (MedLensError, NotFound) as exc:
                    report.failed.append((r.case_id, str(exc)))
            self._embed_into_cache(encoder, record, imgs, enc_id, report)
        if report.embedded:
            self.db.bump_generation(self.name)  # new vectors: loaded indexes are stale
        return report

    # --- index ------------------------------------------------------------------------
    def _index_path(self, enc_id: str) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in enc_id)
        return self.db.path.parent / "library-index" / f"{self.name}__{safe}.ivf"

    def _index(self) -> tuple[np.ndarray, VectorIndex]:
        """(case row ids, index) for the current encoder, reloaded when the library changed."""
        enc_id = self.encoder_id
        gen = self.db.generation(self.name)
        with self._lock:
            if self._loaded is not None:
                (e, g, _), ids, idx = self._loaded
                # Every change to the library's cases or vectors bumps the generation.
                if e == enc_id and g == gen and idx.size == len(ids):
                    return ids, idx
            ids, mat = self._matrix(enc_id, gen)
            index: VectorIndex = ExactIndex(mat)
            use_ann = self.index_mode == "ivf" or (
                self.index_mode == "auto" and len(ids) >= self.ann_min_size
            )
            if use_ann and len(ids) > 0:
                index = self._ivf(enc_id, gen, mat)
            self._loaded = ((enc_id, gen, len(ids)), ids, index)
            return ids, index

    def _matrix(self, enc_id: str, gen: int) -> tuple[np.ndarray, np.ndarray]:
        """Vectors from a snapshot file when current (fast restarts), else from SQLite.

        Reading 10⁶ vectors out of SQLite takes long; big libraries keep a float32 .npy
        snapshot (memory-mapped on load) next to the index, tagged with the generation.
        """
        base = self._index_path(enc_id)
        vec_p = base.with_name(base.name + ".vectors.npy")
        ids_p = base.with_name(base.name + ".ids.npy")
        meta_p = base.with_name(base.name + ".vectors.json")
        expect = {"generation": gen, "encoder_id": enc_id, "library": self.name}
        try:
            if json.loads(meta_p.read_text("utf-8")) == expect:
                ids = np.load(ids_p)
                mat = np.load(vec_p, mmap_mode="r")
                if mat.shape[0] == ids.shape[0]:
                    return ids, mat
        except (OSError, ValueError):
            pass  # absent or unreadable: rebuild from the database
        ids, mat = self.db.matrix(self.name, enc_id)
        if len(ids) >= self.snapshot_min_size:
            base.parent.mkdir(parents=True, exist_ok=True)
            tag = f".tmp{os.getpid()}"
            for path, arr in ((vec_p, mat), (ids_p, ids)):
                tmp = path.with_name(path.name + tag)
                with tmp.open("wb") as fh:
                    np.save(fh, arr)
                os.replace(tmp, path)
            tmp = meta_p.with_name(meta_p.name + tag)
            tmp.write_text(json.dumps(expect), "utf-8")
            os.replace(tmp, meta_p)  # written last: the snapshot counts only when complete
        return ids, mat

    def _ivf(self, enc_id: str, gen: int, mat: np.ndarray) -> IVFIndex:
        path = self._index_path(enc_id)
        expect = {
            "generation": gen,
            "n": int(mat.shape[0]),
            "encoder_id": enc_id,
            "library": self.name,
        }
        if path.is_file():
            try:
                idx, meta = IVFIndex.load(path, mat)
                if all(meta.get(k) == v for k, v in expect.items()):
                    return idx
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                log.warning("case library index %s unreadable (%s); rebuilding", path, exc)
        idx = IVFIndex.build(mat)
        path.parent.mkdir(parents=True, exist_ok=True)
        idx.save(path, expect)
        return idx

    # --- search -------------------------------------------------------------------------
    def size(self) -> int:
        return self.db.count_cases(self.name)

    def search_image(self, embedding: np.ndarray, k: int = 10) -> list[SimilarCase]:
        """The k most similar cases to an image embedding (from the same encoder)."""
        if k < 1:
            raise ConfigError("k must be at least 1.")
        with self._lock:
            return self._search_locked(embedding, k)

    def _search_locked(self, embedding: np.ndarray, k: int) -> list[SimilarCase]:
        ids, index = self._index()
        q = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        if index.size == 0:
            return []
        dim = index.matrix.shape[1]  # type: ignore[attr-defined]
        if q.shape[1] != dim:
            raise ConfigError(
                f"Query embedding has {q.shape[1]} dimensions but library {self.name!r} holds "
                f"{dim}-d vectors from {self.encoder_id}; search with the same encoder."
            )
        sims, rows = index.search(q, k)
        return self._results(ids, sims[0], rows[0])

    def search_text(self, encoder: Encoder, text: str, k: int = 10) -> list[SimilarCase]:
        """Text-to-image search ("A chest X-ray with pneumothorax.")."""
        if not text.strip():
            raise ConfigError("Empty search text.")
        self.use_encoder(encoder)
        emb = np.asarray(encoder.embed_texts([text]), np.float32)
        return self.search_image(emb[0], k)

    def search_images(
        self, encoder: Encoder, record: ModelRecord, images: Sequence[Any], k: int = 10
    ) -> list[list[SimilarCase]]:
        """Embed ingested images with `encoder` and search each."""
        self.use_encoder(encoder)
        emb = np.asarray(encoder.embed_images(image_parts(list(images), record.preprocess)))
        return [self.search_image(e, k) for e in emb]

    def _results(self, ids: np.ndarray, sims: np.ndarray, rows: np.ndarray) -> list[SimilarCase]:
        from medlens.store.blobs import BlobStore

        blobs = BlobStore(self.settings.images_dir)
        valid = [(float(s), int(ids[r])) for s, r in zip(sims, rows, strict=True) if r >= 0]
        cases = self.db.cases_by_id([cid for _, cid in valid])
        out: list[SimilarCase] = []
        for rank, (sim, cid) in enumerate(valid, start=1):
            c = cases.get(cid)
            if c is None:  # removed between index load and lookup
                continue
            thumb_path = str(blobs.path(c.thumbnail)) if c.thumbnail else None
            binary = {
                k: int(v) for k, v in c.labels.items() if isinstance(v, (bool, int)) and v in (0, 1)
            }
            text = {
                k: str(v)
                for k, v in c.labels.items()
                if k not in binary and v != "" and k != "patient_group"
            }
            out.append(
                SimilarCase(
                    c.case_id,
                    c.filename,
                    binary,
                    _snippet(c.report),
                    sim,
                    c.thumbnail,
                    thumb_path,
                    self.name,
                    rank,
                    text,
                )
            )
        return out

    # --- for probes / evaluation ------------------------------------------------------------
    def labelled_embeddings(self, label: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(X (N, dim), y (N,) 0/1, case ids) for cases with a 0/1 value for `label`."""
        x, y, names, _ = self.labelled_data(label)
        return x, y, names

    def labelled_data(
        self, label: str
    ) -> tuple[np.ndarray, np.ndarray, list[str], list[str | None]]:
        """Like labelled_embeddings, plus each case's patient group (None when unknown)."""
        from medlens.tasks.retrieval.cases_csv import GROUP_KEY

        enc_id = self.encoder_id
        ids, mat = self.db.matrix(self.name, enc_id)
        cases = self.db.cases_by_id(ids.tolist())
        keep, ys, names = [], [], []
        groups: list[str | None] = []
        for row, cid in enumerate(ids.tolist()):
            v = cases[cid].labels.get(label)
            if isinstance(v, bool):
                v = int(v)
            if v in (0, 1):
                keep.append(row)
                ys.append(int(v))
                names.append(cases[cid].case_id)
                g = cases[cid].labels.get(GROUP_KEY)
                groups.append(str(g) if g else None)
        if not keep:
            known = sorted({k for c in cases.values() for k in c.labels})
            raise ConfigError(
                f"No case in library {self.name!r} (encoder {enc_id}) has a 0/1 {label!r} "
                f"label. Labels present: {', '.join(known) or 'none'}."
            )
        return mat[keep], np.asarray(ys, np.int64), names, groups
