"""A content-addressed folder of de-identified image files.

A blob's name is the sha256 of its bytes, fanned out as `ab/cd/abcdef...` so no folder
grows huge. Writes are atomic: bytes go to a temporary file in the same folder, are
fsynced, then renamed over the final name (and the folder is fsynced), so a crash leaves
either the whole file or nothing under the final name, never a torn file. The same bytes
written twice land on the same name, which is what makes uploads idempotent.

A blob may have derived files beside it, `<sha256>.<kind>` (its decoded pixels, so an
image is decoded once), which `delete` removes with it and `iter_shas` does not list.

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
_KIND = re.compile(r"^[a-z0-9]{1,16}$")


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not supported on every platform/filesystem.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(final: Path, data: bytes) -> None:
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
        if not (final.is_file() and final.stat().st_size == len(data)):
            _write_atomic(final, data)
        return sha

    def derived_path(self, sha256: str, kind: str) -> Path:
        """Where a file derived from a blob lives (e.g. its decoded pixels): beside it,
        named `<sha256>.<kind>`, and removed with it by `delete`."""
        if not _KIND.match(kind):
            raise ValueError(f"not a derived-file kind: {kind!r}")
        base = self.path(sha256)
        return base.with_name(f"{base.name}.{kind}")

    def put_derived(self, sha256: str, kind: str, data: bytes) -> None:
        """Store a derived file next to an existing blob (atomic, like `put`)."""
        _write_atomic(self.derived_path(sha256, kind), data)

    def read_derived(self, sha256: str, kind: str) -> bytes | None:
        """A derived file's bytes, or None when there is none (e.g. stored before it existed)."""
        try:
            return self.derived_path(sha256, kind).read_bytes()
        except FileNotFoundError:
            return None

    def read(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"image {sha256[:12]}… is not in the image store") from exc

    def delete(self, sha256: str) -> bool:
        """Remove a blob; True when a file was removed. Callers check references first."""
        path = self.path(sha256)
        for derived in path.parent.glob(f"{path.name}.*"):
            with contextlib.suppress(FileNotFoundError):
                derived.unlink()
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
