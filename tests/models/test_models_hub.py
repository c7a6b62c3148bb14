"""Local status, clear missing-model messages, weight hashes (torch-free)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from medlens.config import load_settings
from medlens.errors import ModelNotAvailable
from medlens.models.hub import (
    HASH_CACHE_NAME,
    local_status,
    missing_message,
    pull,
    weights_hash,
)
from medlens.models.registry import load_registry


def test_missing_gated_model_status_says_how_to_get_it() -> None:
    rec = load_registry(load_settings()).get("google/medsiglip-448")
    st = local_status(rec)
    assert not st.available
    for part in ("google/medsiglip-448", "Health AI Developer Foundations", "hf auth login",
                 "medlens models pull google/medsiglip-448", "--model PATH"):
        assert part in st.detail


def test_test_model_message_points_at_make_test() -> None:
    rec = load_registry(load_settings()).get("medlens/test-medgemma")
    assert "medlens models make-test" in missing_message(rec)


def test_pull_offline_is_a_clear_error() -> None:
    rec = load_registry(load_settings()).get("google/medgemma-4b-it")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(ModelNotAvailable, match="HF_HUB_OFFLINE"):
        pull(rec)


def test_available_test_model_status(tiny_test_models: dict[str, Path]) -> None:
    rec = load_registry(load_settings()).get("medlens/test-medsiglip")
    st = local_status(rec)
    assert st.available and st.is_test and st.size_bytes > 0
    assert Path(st.where).resolve() == tiny_test_models["medsiglip-tiny"].resolve()


def test_weights_hash_is_cached_and_tracks_changes(tmp_path: Path) -> None:
    (tmp_path / "model-00001.safetensors").write_bytes(b"abc")
    (tmp_path / "model-00002.safetensors").write_bytes(b"def")
    first = weights_hash(tmp_path)
    expected = hashlib.sha256(
        f"model-00001.safetensors:{hashlib.sha256(b'abc').hexdigest()}\n"
        f"model-00002.safetensors:{hashlib.sha256(b'def').hexdigest()}\n".encode()
    ).hexdigest()
    assert first == f"sha256:{expected}"
    assert (tmp_path / HASH_CACHE_NAME).is_file()
    assert weights_hash(tmp_path) == first
    (tmp_path / "model-00002.safetensors").write_bytes(b"changed")
    assert weights_hash(tmp_path) != first


def test_hf_cache_blob_names_are_used_without_rehashing(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    digest = hashlib.sha256(b"weights").hexdigest()
    (blobs / digest).write_bytes(b"not really the weights")  # the name is trusted
    snap = tmp_path / "snapshot"
    snap.mkdir()
    (snap / "model.safetensors").symlink_to(blobs / digest)
    expected = hashlib.sha256(f"model.safetensors:{digest}\n".encode()).hexdigest()
    assert weights_hash(snap, data_dir=tmp_path / "data") == f"sha256:{expected}"


def _fake_hf_cache(cache: Path, repo_id: str, source: Path) -> str:
    """Lay a checkpoint out exactly as huggingface_hub does: blobs by sha256, refs, snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in source.iterdir():
        if f.is_file() and not f.name.startswith("."):
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            blob = repo / "blobs" / digest
            blob.write_bytes(f.read_bytes())
            (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    return commit


def test_hf_id_loads_from_the_local_hf_cache_offline(
    tmp_path: Path, tiny_test_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real-model path (hf: id -> HF cache snapshot -> loader) with a stand-in checkpoint."""
    pytest.importorskip("torch")
    from medlens.models.session import load_encoder, unload_all

    cache = tmp_path / "hub"
    _fake_hf_cache(cache, "google/medsiglip-448", tiny_test_models["medsiglip-tiny"])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    rec = load_registry(load_settings()).get("google/medsiglip-448")
    st = local_status(rec)
    assert st.available and "snapshots" in st.where
    enc = load_encoder("google/medsiglip-448", load_settings())
    try:
        assert enc.info.model_id == "google/medsiglip-448"
        assert enc.info.is_test  # the stand-in carries the test marker: labelled as such
        weights = Path(st.where) / "model.safetensors"
        blob_sha = Path(os.path.realpath(weights)).name
        expected = hashlib.sha256(f"model.safetensors:{blob_sha}\n".encode()).hexdigest()
        assert enc.info.weights_hash == f"sha256:{expected}"
        assert enc.embed_texts(["A normal chest X-ray."]).shape[0] == 1
    finally:
        unload_all()
