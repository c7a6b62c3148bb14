"""The OpenAI-compatible wire shapes the server speaks, in one place.

Requests (`/v1/chat/completions`), responses (a completion, a stream chunk, the model
list) and the error body that OpenAI client libraries know how to show. The client side
of the same protocol (MedLens calling a remote server) is
`medlens.models.backends.openai_wire`: a lower layer, so it keeps its own dict helpers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medlens.disclaimer import DISCLAIMER

# HTTP status → OpenAI error `type`; anything else is a server_error.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


# --- request --------------------------------------------------------------------------
class ImageURL(BaseModel):
    url: str = Field(max_length=60_000_000, description="data:image/...;base64,... only")
    detail: str | None = None


class ContentPart(BaseModel):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class ChatMessageIn(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send many optional knobs
    model: str | None = None
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=64)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None


# --- response ---------------------------------------------------------------------------
class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    disclaimer: str = DISCLAIMER


class ChunkChoice(BaseModel):
    index: int = 0
    delta: dict[str, str] = Field(description="{'role', 'content'} first, then {'content'}.")
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed completion (framing and [DONE] added by the route)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "medlens"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- errors -------------------------------------------------------------------------------
def finish_reason(reason: str) -> str:
    """A backend's finish reason in OpenAI's words (only 'length' or 'stop')."""
    return "length" if reason in ("length", "max_new_tokens") else "stop"


def error_body(message: str, code: str, status: int = 500) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}}`, as OpenAI sends it."""
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": code,
        }
    }
