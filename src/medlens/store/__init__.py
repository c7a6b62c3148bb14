"""Persistence: studies, images, interpretations, conversations, jobs and audit events.

`open_store(settings_or_url)` picks the backend from the database URL:
`sqlite:///path` (embedded default, one file) or `postgresql://...` (shared
deployments, psycopg 3). Both implement `medlens.store.base.Store` and migrate on open.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medlens.errors import ConfigError
from medlens.store.base import (
    AuditEvent,
    Job,
    JobStatus,
    Message,
    NewImage,
    Store,
    StoredImage,
    Study,
)
from medlens.store.blobs import BlobStore

if TYPE_CHECKING:
    from medlens.config import Settings
    from medlens.store.sqlstore import SqlStore

__all__ = [
    "AuditEvent",
    "BlobStore",
    "Job",
    "JobStatus",
    "Message",
    "NewImage",
    "Store",
    "StoredImage",
    "Study",
    "open_store",
]


def open_store(
    target: Settings | str,
    *,
    images_dir: str | Path | None = None,
    migrate: bool = True,
    pool_size: int = 8,
) -> SqlStore:
    """Open (and migrate) the store named by `settings.resolved_database_url` or a URL.

    With Settings, blobs live in `settings.images_dir`; with a bare URL pass
    `images_dir` (otherwise `store.blobs` is None and images are not managed).
    """
    if isinstance(target, str):
        url = target
    else:
        url = target.resolved_database_url
        images_dir = images_dir if images_dir is not None else target.images_dir
    blobs = BlobStore(images_dir) if images_dir is not None else None
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from medlens.store.sqlite import SqliteStore

        return SqliteStore(url, blobs=blobs, migrate=migrate, pool_size=pool_size)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        from medlens.store.postgres import PostgresStore

        return PostgresStore(
            url.replace("postgresql+psycopg://", "postgresql://", 1),
            blobs=blobs,
            migrate=migrate,
            pool_size=pool_size,
        )
    raise ConfigError(
        f"Unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://..."
    )
