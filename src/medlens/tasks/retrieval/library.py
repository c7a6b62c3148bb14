"""The case library: a hospital's own labelled images, searchable by image or by text.

    lib = CaseLibrary.open(settings, name="default", encoder_id=None)
    lib.add_cases(encoder, record, cases)             # ingest + de-identify + embed + store
    lib.search_image(embedding, k=10) -> list[SimilarCase]
    lib.search_text(encoder, "A chest X-ray with pneumothorax.", k=10)

Adding cases (ingest, de-identify, blobs, embedding cache) is in add_cases.py. Vectors
live in the store's SQLite file (tables.py); search is exact (numpy) up to `ann_min_size`
vectors and approximate (faiss IVF-SQ8 + exact re-rank, vector_index.py) above, with the
index and a vector snapshot kept next to the database (index_files.py) and rebuilt when
the library changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from medlens.errors import ConfigError
from medlens.tasks.encoding import encoder_id as encoder_key
from medlens.tasks.encoding import image_parts
from medlens.tasks.retrieval import add_cases as adding
from medlens.tasks.retrieval.add_cases import AddReport
from medlens.tasks.retrieval.cases_csv import CaseInput
from medlens.tasks.retrieval.index_files import index_path, load_ivf, load_matrix
from medlens.tasks.retrieval.tables import LibraryDB, sqlite_path_for
from medlens.tasks.retrieval.vector_index import ExactIndex, VectorIndex

if TYPE_CHECKING:
    from medlens.config import Settings
    from medlens.models.protocols import Encoder
    from medlens.models.registry import ModelRecord

IndexMode = Literal["auto", "exact", "ivf"]
REPORT_SNIPPET_CHARS = 300


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


def _snippet(text: str | None) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= REPORT_SNIPPET_CHARS else text[: REPORT_SNIPPET_CHARS - 1] + "…"


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
            return adding.add_cases(self, encoder, record, cases, progress)

    def embed_missing(self, encoder: Encoder, record: ModelRecord) -> AddReport:
        """Embed stored cases that have no vector for this encoder (from their stored blobs)."""
        with self._lock:
            return adding.embed_missing(self, encoder, record)

    # --- index ------------------------------------------------------------------------
    def _index_path(self, enc_id: str) -> Path:
        return index_path(self.db.path, self.name, enc_id)

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
            ids, mat = load_matrix(
                self.db, self.name, enc_id, gen, snapshot_min_size=self.snapshot_min_size
            )
            index: VectorIndex = ExactIndex(mat)
            use_ann = self.index_mode == "ivf" or (
                self.index_mode == "auto" and len(ids) >= self.ann_min_size
            )
            if use_ann and len(ids) > 0:
                index = load_ivf(self.db.path, self.name, enc_id, gen, mat)
            self._loaded = ((enc_id, gen, len(ids)), ids, index)
            return ids, index

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
        """Like labelled_embeddings, plus each case's patient group (None when unknown).

        Labels are the case labels `library search` shows. Errors say what is missing:
        cases, vectors from this encoder, or the label.
        """
        from medlens.tasks.retrieval.cases_csv import GROUP_KEY

        enc_id = self.encoder_id
        ids, mat = self.db.matrix(self.name, enc_id)
        if ids.size == 0:
            raise ConfigError(self._no_vectors_message(enc_id))
        cases = self.db.cases_by_id(ids.tolist())
        keep, ys, names = [], [], []
        groups: list[str | None] = []
        for row, cid in enumerate(ids.tolist()):
            v = _binary_value(cases[cid].labels.get(label))
            if v is not None:
                keep.append(row)
                ys.append(v)
                names.append(cases[cid].case_id)
                g = cases[cid].labels.get(GROUP_KEY)
                groups.append(str(g) if g else None)
        if not keep:
            known = sorted(self.binary_label_patients())
            close = [k for k in known if k.casefold() == label.casefold()]
            raise ConfigError(
                f"No case in library {self.name!r} (encoder {enc_id}) has a 0/1 {label!r} "
                f"label{f' (did you mean {close[0]!r}?)' if close else ''}. "
                f"Labels present (0/1): {', '.join(known) or 'none'}."
            )
        return mat[keep], np.asarray(ys, np.int64), names, groups

    def binary_label_patients(self) -> dict[str, tuple[int, int]]:
        """label -> (patients with a 1, patients with a 0) among this encoder's embedded
        cases; a case without a known patient counts as its own patient."""
        from medlens.tasks.retrieval.cases_csv import GROUP_KEY

        ids, _ = self.db.matrix(self.name, self.encoder_id)
        seen: dict[str, tuple[set[str], set[str]]] = {}
        for cid, case in self.db.cases_by_id(ids.tolist()).items():
            patient = str(case.labels.get(GROUP_KEY) or f"case-{cid}")
            for key, value in case.labels.items():
                v = _binary_value(value)
                if v is not None and key != GROUP_KEY:
                    seen.setdefault(key, (set(), set()))[1 - v].add(patient)
        return {k: (len(pos), len(neg)) for k, (pos, neg) in seen.items()}

    def _no_vectors_message(self, enc_id: str) -> str:
        n = self.size()
        if n == 0:
            return (
                f"Library {self.name!r} has no cases; add labelled images with "
                f"`medlens library add DIR --library {self.name}`."
            )
        stored = self.db.encoders(self.name)
        have = ", ".join(f"{e} ({c})" for e, c in stored) or "none"
        hint = f" Pass --encoder {stored[0][0].split('@', 1)[0]}, or embed" if stored else " Embed"
        return (
            f"Library {self.name!r} has {n} case(s) but no vectors from encoder {enc_id} "
            f"(vectors present: {have}).{hint} them with `medlens library embed --encoder "
            f"{enc_id.split('@', 1)[0]} --library {self.name}`."
        )


def _binary_value(value: object) -> int | None:
    if isinstance(value, bool):
        return int(value)
    return value if isinstance(value, int) and value in (0, 1) else None
