"""The listener's spool: each received instance is on disk before the sender hears success.

Layout under `<data_dir>/spool/dicom/` (folders 0700, files 0600), one folder per study:
`<study key>/<instance key>.dcm` for an instance to ingest, `<instance key>.skip` (a
short JSON reason, no pixels) for one the rules turned away at receipt. Keys are keyed
hashes of the Study / SOP Instance UIDs, so no identifier shows in a directory listing.

- Written to a temporary name, flushed and fsync'ed, then renamed: a crash leaves either
  the whole instance or nothing (stray temporaries are removed once an hour old).
- De-duplicated by SOP Instance UID: a second copy of an instance already spooled is not
  written again.
- A study is *stable* (complete) once nothing has arrived for it for `stable_age`
  seconds (like Orthanc's `StableAge`). The arrival time is the files' mtime, so a
  restart re-scans the spool and finds the same studies, stable or not: nothing received
  is lost between receipt and ingest. A study's folder is removed only once ingested.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

DICOM_SUFFIX = ".dcm"
SKIP_SUFFIX = ".skip"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600.0  # a temporary this old belongs to no write in progress


@dataclass(frozen=True)
class SpooledStudy:
    key: str
    folder: Path
    instances: tuple[Path, ...]  # .dcm files, oldest first
    skip_files: tuple[Path, ...]  # instances turned away at receipt (their reasons)
    last_arrival: float  # time.time() of the newest file

    @property
    def skipped(self) -> list[str]:
        return [skip_reason(p) for p in self.skip_files]


class Spool:
    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root
        self._secret = secret
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)

    def key(self, uid: str) -> str:
        return hmac.new(self._secret, uid.encode(), hashlib.sha256).hexdigest()[:32]

    def _study_dir(self, study_uid: str) -> Path:
        return self.root / self.key(study_uid)

    def has(self, study_uid: str, sop_uid: str) -> bool:
        folder, name = self._study_dir(study_uid), self.key(sop_uid)
        return any((folder / f"{name}{s}").exists() for s in (DICOM_SUFFIX, SKIP_SUFFIX))

    def put(self, study_uid: str, sop_uid: str, data: bytes) -> bool:
        """Spool one instance durably; False when it was already there (a duplicate)."""
        return self._write(study_uid, sop_uid, DICOM_SUFFIX, data)

    def put_skip(self, study_uid: str, sop_uid: str, reason: str) -> bool:
        """Remember an instance the rules turned away (its reason, not its pixels)."""
        body = json.dumps({"reason": reason}).encode()
        return self._write(study_uid, sop_uid, SKIP_SUFFIX, body)

    def _write(self, study_uid: str, sop_uid: str, suffix: str, data: bytes) -> bool:
        if self.has(study_uid, sop_uid):
            return False
        folder = self._study_dir(study_uid)
        final = folder / f"{self.key(sop_uid)}{suffix}"
        # Written beside the study folders, then moved in: the ingest loop may remove an
        # empty study folder at any moment, so the folder is (re)made just before the move.
        tmp = self.root / f"{_TMP_PREFIX}{final.name}.{os.getpid()}.{time.monotonic_ns()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            for attempt in range(3):
                folder.mkdir(exist_ok=True, mode=0o700)
                try:
                    os.replace(tmp, final)
                    break
                except FileNotFoundError:  # the folder went between mkdir and the move
                    if attempt == 2:
                        raise
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(folder)
        return True

    def studies(self) -> list[SpooledStudy]:
        """Every study in the spool (temporaries left by a crash are removed)."""
        found = []
        for stray in self.root.glob(f"{_TMP_PREFIX}*"):  # left by a crash mid-write
            if time.time() - _mtime(stray) > _STALE_TMP_S:
                with contextlib.suppress(OSError):
                    stray.unlink()
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = []
            for path in folder.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    files.append((path.stat().st_mtime, path))
            if not files:
                _remove_empty(folder)
                continue
            files.sort()
            found.append(
                SpooledStudy(
                    key=folder.name,
                    folder=folder,
                    instances=tuple(p for _, p in files if p.suffix == DICOM_SUFFIX),
                    skip_files=tuple(p for _, p in files if p.suffix == SKIP_SUFFIX),
                    last_arrival=max(t for t, _ in files),
                )
            )
        return found

    def stable(self, stable_age: float, now: float | None = None) -> list[SpooledStudy]:
        """The studies nothing has arrived for since `stable_age` seconds."""
        now = time.time() if now is None else now
        return [s for s in self.studies() if now - s.last_arrival >= stable_age]

    def remove(self, study: SpooledStudy) -> None:
        """Forget an ingested study: exactly the files it was ingested from (an instance
        that arrived meanwhile stays, and makes the study unstable again)."""
        for path in (*study.instances, *study.skip_files):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        _remove_empty(study.folder)


def skip_reason(path: Path) -> str:
    try:
        return str(json.loads(path.read_text()).get("reason", "turned away"))
    except (OSError, ValueError):
        return "turned away"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: something new arrived, keep it
        folder.rmdir()


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk too.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
