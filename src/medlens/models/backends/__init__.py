"""Model backends. Each lives in its own module and imports its heavy deps lazily.

`BACKENDS` says, per backend name, which modules it needs and which extra installs
them; `backend_status()` checks availability without importing torch (find_spec only).
The loader dispatches sources by scheme through `SCHEME_LOADERS` ("module:function"),
so a new backend plugs in by adding one entry here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from medlens.errors import BackendUnavailable


@dataclass(frozen=True)
class BackendSpec:
    name: str
    requires: tuple[str, ...]  # importable module names
    extra: str  # pip extra that installs them: pip install 'medlens[<extra>]'
    description: str


BACKENDS: dict[str, BackendSpec] = {
    "transformers": BackendSpec(
        "transformers",
        ("torch", "transformers", "safetensors"),
        "hf",
        "Hugging Face transformers (MedGemma, MedSigLIP; CPU or CUDA, bf16/fp32).",
    ),
    "llamacpp": BackendSpec(
        "llamacpp",
        ("llama_cpp",),
        "gguf",
        "llama.cpp GGUF files (+ mmproj for images).",
    ),
    "openai": BackendSpec(
        "openai",
        ("httpx",),
        "server",
        "Any OpenAI-compatible server (vLLM, Ollama, llama.cpp).",
    ),
    "scripted": BackendSpec(
        "scripted", (), "dev", "Fixed text per prompt kind (test model: medlens/test-scripted)."
    ),
}

# scheme -> kind -> "module:function" building a Generator / Encoder from a record.
SCHEME_LOADERS: dict[str, dict[str, str]] = {
    "hf": {
        "generator": "medlens.models.backends.transformers_generator:load_generator",
        "encoder": "medlens.models.backends.transformers_encoder:load_encoder",
    },
    "path": {
        "generator": "medlens.models.backends.transformers_generator:load_generator",
        "encoder": "medlens.models.backends.transformers_encoder:load_encoder",
    },
    "gguf": {"generator": "medlens.models.backends.llamacpp:load_generator"},
    "openai": {"generator": "medlens.models.backends.openai_remote:load_generator"},
    "scripted": {"generator": "medlens.models.backends.scripted:load_generator"},
}

SCHEME_BACKEND = {
    "hf": "transformers",
    "path": "transformers",
    "gguf": "llamacpp",
    "openai": "openai",
    "scripted": "scripted",
}


def is_available(name: str) -> bool:
    spec = BACKENDS[name]
    return all(importlib.util.find_spec(mod) is not None for mod in spec.requires)


def backend_status() -> dict[str, tuple[bool, str]]:
    """backend name -> (available?, extra that installs it)."""
    return {name: (is_available(name), spec.extra) for name, spec in BACKENDS.items()}


def require(name: str) -> None:
    """Raise BackendUnavailable naming the extra when a backend's deps are missing."""
    spec = BACKENDS[name]
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(
            f"The {name} backend needs {', '.join(missing)}: pip install 'medlens[{spec.extra}]'."
        )
