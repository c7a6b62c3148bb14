"""OpenAI-compatible chat completions on the configured generator.

Images arrive as `image_url` parts holding data: URLs only (the server never fetches a
remote URL: it is offline by design and that would be an SSRF hole). Each image is
ingested (decoded, validated) and preprocessed to the model's spec, like an upload,
but nothing is stored.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Iterator
from typing import Any

from medlens.config import Settings
from medlens.errors import InvalidImage, MedLensError
from medlens.server.schemas import ChatCompletionRequest

MAX_IMAGES = 8


class BadChatRequest(MedLensError):
    http_status = 400
    code = "invalid_request"


def _decode_data_url(url: str) -> bytes:
    if not url.startswith("data:"):
        raise BadChatRequest("image_url must be a data: URL (base64); remote URLs are not fetched.")
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise BadChatRequest("image_url data: URLs must be base64-encoded.")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage("image_url: invalid base64 data.") from exc


def _image_part(data: bytes, generator: Any, settings: Settings) -> Any:
    from medlens.imaging.ingest import ingest
    from medlens.imaging.preprocess import preprocess
    from medlens.models.protocols import ImagePart
    from medlens.models.registry import load_registry

    ingested = ingest(data, name="image_url")
    image = ingested.image
    registry = load_registry(settings)
    model_id = generator.info.model_id
    record = registry.get(model_id) if model_id in registry else None
    if record is not None and record.preprocess is not None:
        image = preprocess(image, record.preprocess)
    return ImagePart(image=image.convert("RGB"), key=ingested.pixel_sha256)


def build_messages(req: ChatCompletionRequest, generator: Any, settings: Settings) -> list[Any]:
    from medlens.models.protocols import ChatMessage, TextPart

    out = []
    n_images = 0
    for msg in req.messages:
        if isinstance(msg.content, str):
            out.append(ChatMessage.text(msg.role, msg.content))
            continue
        parts: list[Any] = []
        for part in msg.content:
            if part.type == "text":
                parts.append(TextPart(part.text or ""))
            elif part.image_url is not None:
                n_images += 1
                if n_images > MAX_IMAGES:
                    raise BadChatRequest(f"At most {MAX_IMAGES} images per request.")
                data = _decode_data_url(part.image_url.url)
                parts.append(_image_part(data, generator, settings))
            else:
                raise BadChatRequest("image_url part without an image_url object.")
        out.append(ChatMessage(msg.role, tuple(parts)))
    return out


def generation_config(req: ChatCompletionRequest, settings: Settings) -> Any:
    from medlens.models.protocols import GenerationConfig

    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    return GenerationConfig(
        max_new_tokens=req.max_completion_tokens or req.max_tokens or settings.max_new_tokens,
        temperature=req.temperature or 0.0,
        top_p=req.top_p or 1.0,
        seed=req.seed,
        stop=stop,
    )


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def run(req: ChatCompletionRequest, generator: Any, settings: Settings) -> dict[str, Any]:
    from medlens.models.protocols import GenerationStats

    messages = build_messages(req, generator, settings)
    stats = GenerationStats()
    text = "".join(generator.stream(messages, generation_config(req, settings), stats))
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": generator.info.model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": _finish(stats.finish_reason),
            }
        ],
        "usage": {
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.output_tokens,
            "total_tokens": stats.prompt_tokens + stats.output_tokens,
        },
        "system_fingerprint": generator.info.weights_hash[:16] or None,
    }


def _finish(reason: str) -> str:
    return "length" if reason in ("length", "max_new_tokens") else "stop"


def stream_chunks(
    req: ChatCompletionRequest, generator: Any, settings: Settings
) -> Iterator[dict[str, Any]]:
    """OpenAI `chat.completion.chunk` objects (the caller adds `data:` framing and [DONE])."""
    from medlens.models.protocols import GenerationStats

    messages = build_messages(req, generator, settings)
    stats = GenerationStats()
    cid, created, model = completion_id(), int(time.time()), generator.info.model_id

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield chunk({"role": "assistant", "content": ""})
    for piece in generator.stream(messages, generation_config(req, settings), stats):
        if piece:
            yield chunk({"content": piece})
    yield chunk({}, _finish(stats.finish_reason))
