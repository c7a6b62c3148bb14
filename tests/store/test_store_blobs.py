"""Content-addressed blob folder: names, atomic writes, deletes."""

from __future__ import annotations

import hashlib
import os

import pytest

from medlens.store.blobs import BlobStore


def test_put_is_content_addressed_and_idempotent(tmp_path):
    blobs = BlobStore(tmp_path)
    sha = blobs.put(b"pixels")
    assert sha == hashlib.sha256(b"pixels").hexdigest()
    assert blobs.path(sha) == tmp_path / sha[:2] / sha[2:4] / sha
    assert blobs.put(b"pixels") == sha
    assert blobs.read(sha) == b"pixels"
    assert blobs.iter_shas() == [sha]
    assert oct(blobs.path(sha).stat().st_mode & 0o777) == "0o600"


def test_failed_write_leaves_no_file_and_no_temp(tmp_path, monkeypatch):
    blobs = BlobStore(tmp_path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        blobs.put(b"never")
    assert not blobs.exists(hashlib.sha256(b"never").hexdigest())
    assert list(tmp_path.rglob("*.tmp*")) == [] and list(tmp_path.rglob(".tmp-*")) == []


def test_torn_file_under_final_name_is_rewritten(tmp_path):
    blobs = BlobStore(tmp_path)
    sha = hashlib.sha256(b"complete bytes").hexdigest()
    blobs.path(sha).parent.mkdir(parents=True)
    blobs.path(sha).write_bytes(b"compl")  # e.g. copied in by hand, cut short
    assert blobs.put(b"complete bytes") == sha
    assert blobs.read(sha) == b"complete bytes"


def test_delete_and_bad_names(tmp_path):
    blobs = BlobStore(tmp_path)
    sha = blobs.put(b"x")
    assert blobs.delete(sha) and not blobs.delete(sha)
    assert list(tmp_path.iterdir()) == []  # empty fan-out folders removed
    with pytest.raises(ValueError):
        blobs.path("../../etc/passwd")
    from medlens.errors import NotFound

    with pytest.raises(NotFound):
        blobs.read(sha)


def test_stale_temps_are_swept_only_when_old(tmp_path):
    blobs = BlobStore(tmp_path)
    d = tmp_path / "ab" / "cd"
    d.mkdir(parents=True)
    (d / ".tmp-young").write_bytes(b"1")
    old = d / ".tmp-old"
    old.write_bytes(b"1")
    os.utime(old, (0, 0))
    assert blobs.remove_stale_temps() == 1
    assert (d / ".tmp-young").exists() and not old.exists()
