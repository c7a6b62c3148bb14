"""Where a model's weights come from, by scheme.

`hf:owner/name` (Hugging Face id), `path:/dir` (a local checkpoint folder),
`gguf:/file.gguf[?mmproj=/file.gguf]` (llama.cpp) and `openai:http://host/v1[?model=name]`
(any OpenAI-compatible server). A bare `owner/name` means hf:, a bare existing path
means path: (or gguf: for a `.gguf` file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from medlens.errors import ConfigError

Scheme = Literal["hf", "path", "gguf", "openai", "scripted"]
# scripted: the fixed-text test generator (models/backends/scripted.py); never weights.
SCHEMES: tuple[Scheme, ...] = ("hf", "path", "gguf", "openai", "scripted")


@dataclass(frozen=True)
class Source:
    scheme: Scheme
    location: str  # HF id, filesystem path, or URL
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.scheme}:{self.location}" + (f"?{query}" if query else "")

    @property
    def path(self) -> Path:
        return Path(self.location).expanduser()


def parse_source(text: str) -> Source:
    """Parse a source string; raises ConfigError with the accepted forms."""
    text = text.strip()
    if not text:
        raise ConfigError("Empty model source; use hf:ID, path:DIR, gguf:FILE or openai:URL.")
    scheme, sep, rest = text.partition(":")
    if sep and scheme in SCHEMES and not (scheme == "path" and rest.startswith("//")):
        if scheme == "openai":
            parts = urlsplit(rest)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"openai: source needs an http(s) URL, got {rest!r}.")
            options = dict(parse_qsl(parts.query))
            base = rest.split("?", 1)[0]
            return Source("openai", base, options)
        location, _, query = rest.partition("?")
        return Source(scheme, location, dict(parse_qsl(query)))  # type: ignore[arg-type]
    candidate = Path(text).expanduser()
    if candidate.exists():
        return Source("gguf" if candidate.suffix == ".gguf" else "path", str(candidate))
    if text.count("/") == 1 and not text.startswith(("/", ".", "~")):
        return Source("hf", text)
    raise ConfigError(
        f"Cannot tell where model {text!r} comes from: it is no registry id, no existing "
        "path, and not of the form hf:ID, path:DIR, gguf:FILE or openai:URL."
    )
