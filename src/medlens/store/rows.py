"""Small helpers shared by the SQL backends: ids, hashes, times, row -> dataclass."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from medlens.store.base import NewImage

JOB_COLUMNS = (
    "id, study_id, kind, status, progress, stage, payload, result, error, attempts,"
    " created_at, updated_at, lease_owner, lease_expires_at, max_attempts, restarts"
)
STUDY_COLUMNS = 'id, created_at, context, idempotency_key, owner, owner_id, "group"'
IMAGE_COLUMNS = "id, study_id, position, sha256, pixel_sha256, format, filename, metadata"
AUDIT_COLUMNS = "id, at, actor, action, study_id, outcome, detail"
MESSAGE_COLUMNS = "study_id, seq, role, content, created_at, job_id"

DEFAULT_MAX_ATTEMPTS = 3
# A job whose worker dies this many times more is one that kills its worker: it fails.
MAX_RESTARTS = 10


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """Fixed-width ISO 8601 UTC, so that text comparison orders like time (SQLite)."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def image_set_hash(images: Iterable[NewImage]) -> str:
    """Order-insensitive identity of an upload: the sorted set of its image hashes."""
    shas = sorted({img.sha256 for img in images})
    return hashlib.sha256("\n".join(shas).encode()).hexdigest()


def owner_key(owner: str | None) -> str:
    # NULLs never collide in UNIQUE constraints; '' does.
    return owner or ""


def clamp_progress(progress: float) -> float:
    return min(1.0, max(0.0, float(progress)))


def _default(obj: Any) -> Any:
    # numpy scalars/arrays, dataclasses, paths and dates show up in handler results.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (Path, datetime, date)):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON")


def json_dumps(obj: Any) -> str:
    """Strict JSON (NaN/Infinity refused: PostgreSQL's jsonb and FHIR refuse them too)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_default)


def json_loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value
