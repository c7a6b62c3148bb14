"""The OpenAI chat/completions wire format, shared by the remote and GGUF backends.

Pure functions (no network, no heavy imports): MedLens chat messages to OpenAI message
dicts (images as base64 PNG `image_url` data URLs), generation config to request
fields, server-sent-event parsing, and URL redaction for messages users see.
"""

from __future__ import annotations

import base64
import io
import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from medlens.models.chat_template import GEMMA_CONTROL_STRINGS
from medlens.models.protocols import ChatMessage, GenerationConfig, ImagePart, TextPart


class DataUrlCache:
    """Small LRU of image key -> data URL: follow-up questions reuse the encoding."""

    def __init__(self, capacity: int = 16) -> None:
        self._items: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def get(self, part: ImagePart) -> str:
        url = self._items.get(part.key)
        if url is None:
            url = image_data_url(part)
            self._items[part.key] = url
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(part.key)
        return url


def image_data_url(part: ImagePart) -> str:
    """PNG (lossless: a medical image must not pick up JPEG artefacts) as a data URL."""
    image = part.image
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def sanitise(text: str) -> str:
    """Drop Gemma control strings from text: servers render the chat template and then
    parse special tokens, so a note or OCR'd text could otherwise open a fake turn."""
    for control in GEMMA_CONTROL_STRINGS:
        text = text.replace(control, "")
    return text


def to_openai_messages(
    messages: Sequence[ChatMessage], cache: DataUrlCache | None = None
) -> list[dict[str, Any]]:
    """OpenAI chat messages. Text-only turns are sent as a plain string (servers that
    predate multi-part content accept only that); turns with images as a part list,
    in the order given (MedGemma 1.5 wants the image first, v1 the text first)."""
    cache = cache or DataUrlCache()
    out: list[dict[str, Any]] = []
    for msg in messages:
        if not msg.images:
            text = sanitise("".join(p.text for p in msg.content if isinstance(p, TextPart)))
            out.append({"role": msg.role, "content": text})
            continue
        parts: list[dict[str, Any]] = []
        for part in msg.content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": sanitise(part.text)})
            else:
                parts.append({"type": "image_url", "image_url": {"url": cache.get(part)}})
        out.append({"role": msg.role, "content": parts})
    return out


def sampling_fields(config: GenerationConfig) -> dict[str, Any]:
    """Request fields for a generation config (greedy when temperature is 0)."""
    fields: dict[str, Any] = {
        "max_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p if config.temperature > 0 else 1.0,
    }
    if config.seed is not None:
        fields["seed"] = config.seed
    if config.stop:
        fields["stop"] = list(config.stop)
    if config.min_new_tokens > 0:
        # vLLM's extension; other servers ignore unknown fields.
        fields["min_tokens"] = config.min_new_tokens
    return fields


DONE = "[DONE]"


class SSEError(ValueError):
    """A malformed event or an error event inside a stream."""


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The `data:` payloads of a server-sent-event stream, one per event.

    Multi-line data fields are joined with newlines (per the SSE spec); comments
    (`:` lines, used as keep-alives) and other fields are skipped. The OpenAI end
    marker is yielded as DONE and ends the iteration, so callers can tell a complete
    stream from one that was cut off.
    """
    buffer: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if buffer:
                payload = "\n".join(buffer)
                buffer = []
                if payload.strip() == DONE:
                    yield DONE
                    return
                yield payload
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            buffer.append(value[1:] if value.startswith(" ") else value)
    if buffer:
        payload = "\n".join(buffer)
        yield DONE if payload.strip() == DONE else payload


def parse_chunk(payload: str) -> dict[str, Any]:
    try:
        chunk = json.loads(payload)
    except ValueError as exc:
        raise SSEError(f"malformed stream event: {payload[:200]!r}") from exc
    if not isinstance(chunk, dict):
        raise SSEError(f"malformed stream event: {payload[:200]!r}")
    if "error" in chunk:
        raise SSEError(f"server error in stream: {error_text(chunk)}")
    return chunk


def chunk_delta(chunk: dict[str, Any]) -> tuple[str, str | None]:
    """(text delta, finish_reason) of one chat-completion chunk."""
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    delta = choice.get("delta") or {}
    return delta.get("content") or "", choice.get("finish_reason")


def error_text(body: Any) -> str:
    """The human part of an OpenAI-style error body (or the body, shortened)."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:500]
        return str(err)[:500]
    return str(body)[:500]


def redact_url(url: str) -> str:
    """The URL without user:password@ (safe to show and log)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
