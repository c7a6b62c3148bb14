"""A content-addressed folder of de-identified image files.

A blob's name is the sha256 of its bytes, fanned out as `ab/cd/abcdef...` so no folder
grows huge. Writes are atomic: bytes go to a temporary file in the same folder, are
fsynced, then renamed over the final name (and the folder is fsynced), so a crash leaves
either the whole file or nothing under the final name, never a torn file. The same bytes
written twice land on the same name, which is what makes uploads idempotent.

Only de-identified bytes belong here: the store never sees the original upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

from medlens.errors import NotFound

_SHA = re.compile(r"^[0-9a-f]{64}$")


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not supported on every platform/filesystem.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class BlobStore:
    """Files named by their sha256 under `root`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            # The name becomes a path: refuse anything but a lowercase hex digest.
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, data: bytes) -> str:
        """Store bytes (no-op when already present); returns their sha256."""
        sha = hashlib.sha256(data).hexdigest()
        final = self.path(sha)
        if final.is_file() and final.stat().st_size == len(data):
            return sha
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp_name, 0o600)  # images are clinical data: owner-only
            os.replace(tmp_name, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(final.parent)
        return sha

    def read(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"image {sha256[:12]}… is not in the image store") from exc

    def delete(self, sha256: str) -> bool:
        """Remove a blob; True when a file was removed. Callers check references first."""
        path = self.path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        for parent in (path.parent, path.parent.parent):
            with contextlib.suppress(OSError):
                parent.rmdir()  # only succeeds when empty
        return True

    def iter_shas(self) -> list[str]:
        """Every stored blob's sha256 (for sweeps and PHI audits)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.glob("??/??/*") if _SHA.match(p.name))

    def remove_stale_temps(self, older_than_s: float = 3600.0) -> int:
        """Delete temporary files left by a crash mid-write; returns how many.

        Only old ones: a young temp file may belong to a write in progress elsewhere.
        """
        count = 0
        if self.root.is_dir():
            cutoff = time.time() - older_than_s
            for tmp in self.root.glob("??/??/.tmp-*"):
                with contextlib.suppress(OSError):
                    if tmp.stat().st_mtime < cutoff:
                        tmp.unlink()
                        count += 1
        return count
