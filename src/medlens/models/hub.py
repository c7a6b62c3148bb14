"""Where model weights are on this machine, getting them, and hashing them (no torch).

- `local_snapshot`: the HF-cache folder of an hf: record, offline (never downloads).
- `local_status`: per record, found where / what is missing (for `models list|info`).
- `pull`: download through huggingface_hub (needs network, a token, accepted terms).
- `weights_hash`: sha256 over the weight files, cached by (size, mtime) for provenance.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlens.errors import ModelNotAvailable
from medlens.models.local_info import TEST_MODEL_MARKER
from medlens.models.registry import ModelRecord

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
HASH_CACHE_NAME = ".medlens_weights_hash.json"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
HAI_DEF_TERMS = "Health AI Developer Foundations terms"


def missing_message(record: ModelRecord, detail: str = "") -> str:
    """The one clear message for weights that are not here (gated or not downloaded)."""
    src = record.parsed_source
    if record.is_test:
        return (
            f"Test model {record.id!r} is not built yet ({src.location}). "
            "Build it with: medlens models make-test" + (f" ({detail})" if detail else "")
        )
    if src.scheme == "hf":
        gated = (
            f" It is gated: accept the {HAI_DEF_TERMS} on https://huggingface.co/{src.location},"
            " then log in with `hf auth login` (or set HF_TOKEN / MEDLENS_HF_TOKEN)."
            if record.gated
            else ""
        )
        return (
            f"Model {record.id!r} ({src.location}) is not in the local Hugging Face cache."
            f"{gated} Download it with `medlens models pull {record.id}`, or point MedLens at "
            "a local checkpoint folder with --model PATH." + (f" ({detail})" if detail else "")
        )
    return (
        f"Model {record.id!r}: nothing found at {src.location}. Pass an existing checkpoint "
        "folder with --model PATH." + (f" ({detail})" if detail else "")
    )


def local_snapshot(repo_id: str, revision: str = "main") -> Path | None:
    """The cached snapshot folder for repo_id@revision, or None (offline, no network)."""
    try:
        from huggingface_hub import snapshot_download

        # HF_HUB_CACHE read per call (huggingface_hub reads it once at import).
        path = snapshot_download(
            repo_id,
            revision=revision,
            local_files_only=True,
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
        )
    except Exception:  # LocalEntryNotFoundError, offline errors, bad cache: all "not here"
        return None
    root = Path(path)
    return root if (root / "config.json").is_file() else None


def checkpoint_path(record: ModelRecord) -> Path | None:
    """Local folder (or file) holding this record's weights, if present."""
    src = record.parsed_source
    if src.scheme == "hf":
        return local_snapshot(src.location, record.revision or "main")
    if src.scheme in ("path", "gguf"):
        path = src.path
        if src.scheme == "path":
            return path if (path / "config.json").is_file() else None
        return path if path.is_file() else None
    return None


@dataclass(frozen=True)
class LocalStatus:
    record_id: str
    available: bool
    where: str  # the folder / file found, or the URL for remote sources
    detail: str  # what is missing, or "" when available
    size_bytes: int = 0
    is_test: bool = False


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def local_status(record: ModelRecord) -> LocalStatus:
    src = record.parsed_source
    if src.scheme == "scripted":
        return LocalStatus(record.id, True, str(src), "fixed text (test model)", is_test=True)
    if src.scheme == "openai":
        return LocalStatus(
            record.id,
            True,
            src.location,
            "remote server (checked when used)",
            is_test=record.is_test,
        )
    path = checkpoint_path(record)
    if path is None:
        return LocalStatus(record.id, False, "", missing_message(record), is_test=record.is_test)
    return LocalStatus(
        record.id,
        True,
        str(path),
        "",
        _size(path.resolve()),
        is_test=record.is_test or (path / TEST_MODEL_MARKER).is_file(),
    )


def pull(record: ModelRecord, token: str | None = None) -> Path:
    """Download an hf: record into the HF cache; clear errors when gated or offline."""
    src = record.parsed_source
    if src.scheme != "hf":
        raise ModelNotAvailable(
            f"Model {record.id!r} comes from {src.scheme}:, which has nothing to pull."
            + (" Build test models with: medlens models make-test" if record.is_test else "")
        )
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        raise ModelNotAvailable(
            f"Cannot pull {record.id!r}: HF_HUB_OFFLINE is set (no network). "
            + missing_message(record)
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        path = snapshot_download(
            src.location,
            revision=record.revision or "main",
            token=token,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt"],
        )
    except GatedRepoError as exc:
        raise ModelNotAvailable(
            f"{record.id!r} is gated and this account has no access yet: accept the "
            f"{HAI_DEF_TERMS} on https://huggingface.co/{src.location} and log in with "
            "`hf auth login`."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotAvailable(
            f"{src.location!r} was not found on Hugging Face (or needs a token: `hf auth login`)."
        ) from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelNotAvailable(
            f"Could not download {record.id!r}: {str(exc).splitlines()[0]}. "
            + missing_message(record)
        ) from exc
    return Path(path)


# --- provenance -----------------------------------------------------------------
def weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.name.endswith(".safetensors"))
    if not files:
        files = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    return files


def _file_sha256(path: Path) -> str:
    # HF cache: the file is a symlink to blobs/<sha256>, which *is* its LFS sha256.
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if target.parent.name == "blobs" and _HEX64.match(target.name):
            return target.name
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_cache_file(root: Path, data_dir: Path | None) -> Path:
    folder = root if root.is_dir() else root.parent
    if os.access(folder, os.W_OK) and "huggingface" not in str(folder):
        return folder / HASH_CACHE_NAME
    base = (data_dir or Path.home() / ".medlens") / "cache" / "weights-hash"
    return base / (hashlib.sha1(str(root.resolve()).encode()).hexdigest() + ".json")


def weights_hash(path: Path, data_dir: Path | None = None) -> str:
    """sha256 over the weight files ("sha256:<hex>"); recomputed only when files change."""
    files = weight_files(path)
    if not files:
        return ""
    keys = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files}
    cache_file = _hash_cache_file(path, data_dir)
    cached: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(cache_file.read_text("utf-8"))
    if cached.get("files") == keys and cached.get("hash"):
        return str(cached["hash"])
    combined = hashlib.sha256()
    for f in files:
        combined.update(f"{f.name}:{_file_sha256(f)}\n".encode())
    value = "sha256:" + combined.hexdigest()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps({"files": keys, "hash": value}), "utf-8")
    except OSError:
        pass  # read-only location: hash again next time
    return value
