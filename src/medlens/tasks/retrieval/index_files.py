"""A library's search files beside its database: the vector snapshot and the IVF index.

Reading 10⁶ vectors out of SQLite takes long, so big libraries keep a float32 .npy
snapshot (memory-mapped on load) tagged with the library's generation, and the faiss
index file is rebuilt only when the library changed since it was written.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from medlens.tasks.retrieval.tables import LibraryDB
from medlens.tasks.retrieval.vector_index import IVFIndex

log = logging.getLogger(__name__)


def index_path(db_path: Path, library: str, enc_id: str) -> Path:
    """Where `library`'s index for encoder `enc_id` lives (snapshot files share the stem)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in enc_id)
    return db_path.parent / "library-index" / f"{library}__{safe}.ivf"


def load_matrix(
    db: LibraryDB, library: str, enc_id: str, gen: int, *, snapshot_min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(case row ids, vectors): from the snapshot when current, else from SQLite.

    A library of at least `snapshot_min_size` vectors (re)writes its snapshot.
    """
    base = index_path(db.path, library, enc_id)
    vec_p = base.with_name(base.name + ".vectors.npy")
    ids_p = base.with_name(base.name + ".ids.npy")
    meta_p = base.with_name(base.name + ".vectors.json")
    expect = {"generation": gen, "encoder_id": enc_id, "library": library}
    try:
        if json.loads(meta_p.read_text("utf-8")) == expect:
            ids = np.load(ids_p)
            mat = np.load(vec_p, mmap_mode="r")
            if mat.shape[0] == ids.shape[0]:
                return ids, mat
    except (OSError, ValueError):
        pass  # absent or unreadable: rebuild from the database
    ids, mat = db.matrix(library, enc_id)
    if len(ids) >= snapshot_min_size:
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


def load_ivf(db_path: Path, library: str, enc_id: str, gen: int, mat: np.ndarray) -> IVFIndex:
    """The IVF index over `mat`, loaded when its file is current, else built and saved."""
    path = index_path(db_path, library, enc_id)
    expect = {"generation": gen, "n": int(mat.shape[0]), "encoder_id": enc_id, "library": library}
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
