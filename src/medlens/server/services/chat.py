"""OpenAI-compatible chat completions on the configured generator.

Images arrive as `image_url` parts holding data: URLs only (the server never fetches a
remote URL: it is offline by design and that would be an SSRF hole). Each image is
ingested (decoded, validated), checked by the same chest X-ray gate as an upload
(`imaging.gate.require_chest_xray`: a refusal is the same 422 `image_refused`) and
preprocessed to the model's spec, like an upload, but nothing is stored.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from medlens.config import Settings
from medlens.errors import InvalidImage, MedLensError
from medlens.server.openai_shapes import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceMessage,
    ChunkChoice,
    Usage,
    finish_reason,
)

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
    from medlens.imaging.gate import require_chest_xray
    from medlens.imaging.ingest import ingest
    from medlens.imaging.preprocess import preprocess
    from medlens.models.protocols import ImagePart
    from medlens.models.registry import load_registry

    ingested = ingest(data, name="image_url", max_pixels=settings.max_image_pixels)
    require_chest_xray(ingested)  # the generator is a chest X-ray reader: no answer on a photo
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


@dataclass(frozen=True)
class PreparedChat:
    """A request turned into model inputs, once: images decoded and preprocessed, the
    config resolved. Built before a stream's 200 goes out (so bad input still gets its
    error status) and then streamed from as is."""

    messages: list[Any]  # ChatMessage
    config: Any  # GenerationConfig
    model: str
    fingerprint: str | None


def prepare(req: ChatCompletionRequest, generator: Any, settings: Settings) -> PreparedChat:
    return PreparedChat(
        messages=build_messages(req, generator, settings),
        config=generation_config(req, settings),
        model=generator.info.model_id,
        fingerprint=generator.info.weights_hash[:16] or None,
    )


def run(prepared: PreparedChat, generator: Any) -> ChatCompletion:
    from medlens.models.protocols import GenerationStats

    stats = GenerationStats()
    text = "".join(generator.stream(prepared.messages, prepared.config, stats))
    return ChatCompletion(
        id=completion_id(),
        created=int(time.time()),
        model=prepared.model,
        choices=[
            Choice(
                message=ChoiceMessage(content=text),
                finish_reason=finish_reason(stats.finish_reason),
            )
        ],
        usage=Usage(
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.output_tokens,
            total_tokens=stats.prompt_tokens + stats.output_tokens,
        ),
        system_fingerprint=prepared.fingerprint,
    )


def stream_chunks(prepared: PreparedChat, generator: Any) -> Iterator[ChatCompletionChunk]:
    """The completion as chunks: the role first, then text pieces, then the finish."""
    from medlens.models.protocols import GenerationStats

    stats = GenerationStats()
    cid, created = completion_id(), int(time.time())

    def chunk(delta: dict[str, str], finish: str | None = None) -> ChatCompletionChunk:
        choice = ChunkChoice(delta=delta, finish_reason=finish)
        return ChatCompletionChunk(id=cid, created=created, model=prepared.model, choices=[choice])

    yield chunk({"role": "assistant", "content": ""})
    for piece in generator.stream(prepared.messages, prepared.config, stats):
        if piece:
            yield chunk({"content": piece})
    yield chunk({}, finish_reason(stats.finish_reason))
