"""Generator backend for any OpenAI-compatible server (`openai:` sources).

`openai:http://host:8000/v1?model=NAME` - vLLM, Ollama (`/v1`), llama.cpp's
llama-server, or a hospital gateway. Chat completions stream over server-sent events;
images travel as base64 PNG data URLs. Where the server offers prompt log-probabilities
(vLLM: `/tokenize` plus completions with `echo` and `logprobs`) the generator also
implements `LoglikelihoodScorer` for the evaluation harness.

Tunables, from the record's `options` table or the source query string:
`model`, `timeout_s` (longest silence while reading, default 120), `connect_timeout_s`
(10), `max_retries` (3), `backoff_base_s` (0.5), `backoff_max_s` (8), `api_key_env`
(name of an environment variable holding this server's key; default: the
`remote_api_key` setting, MEDLENS_REMOTE_API_KEY).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from medlens.errors import ConfigError, RemoteModelError
from medlens.models.backends.openai_http import RETRY_EXCEPTIONS, RemoteClient, RetryPolicy
from medlens.models.backends.openai_wire import (
    DONE,
    DataUrlCache,
    SSEError,
    chunk_delta,
    iter_sse_data,
    parse_chunk,
    sampling_fields,
    to_openai_messages,
)
from medlens.models.protocols import BackendInfo, StreamingGenerator

if TYPE_CHECKING:
    from medlens.models.protocols import ChatMessage, GenerationConfig, GenerationStats
    from medlens.models.registry import ModelRecord

log = logging.getLogger(__name__)


def available() -> tuple[bool, str]:
    """(installed?, extra that installs it)."""
    import importlib.util

    return importlib.util.find_spec("httpx") is not None, "server"


class OpenAIRemoteGenerator(StreamingGenerator):
    """Streams chat completions from a remote server; scores continuations if it can."""

    def __init__(self, client: RemoteClient, model: str, info: BackendInfo) -> None:
        self.client = client
        self.model = model
        self.info = info
        self._images = DataUrlCache()
        self._tokenize_style: str | None = None  # "vllm" | "llamacpp" | "none"

    def __repr__(self) -> str:
        return f"OpenAIRemoteGenerator({self.client.shown_url!r}, model={self.model!r})"

    def close(self) -> None:
        self.client.close()

    # --- generation ------------------------------------------------------------------
    def _generate(
        self, messages: Sequence[ChatMessage], config: GenerationConfig, stats: GenerationStats
    ) -> Iterator[str]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(messages, self._images),
            "stream": True,
            "stream_options": {"include_usage": True},
            **sampling_fields(config),
        }
        stats.images_encoded += sum(len(m.images) for m in messages)
        start = time.perf_counter()
        attempt = 0
        while True:
            produced = False
            try:
                for piece in self._stream_once(body, stats, start):
                    produced = True
                    yield piece
                break
            except RETRY_EXCEPTIONS as exc:
                # Nothing was yielded yet: a clean retry is possible. Afterwards the caller
                # already holds partial text, so the failure must surface.
                attempt += 1
                if produced or attempt > self.client.retry.max_retries:
                    what = "the stream" if produced else "a chat completion"
                    err = self.client.transport_error(exc, what, attempt)
                    if produced:
                        err = RemoteModelError(f"{err.message} The reply was cut off.")
                    raise err from None
                self.client.wait_before_retry(attempt, f"stream failed ({type(exc).__name__})")
        stats.timings["total"] = time.perf_counter() - start
        if "first_token" in stats.timings:
            # Server-side prefill (and image encoding) is inside first_token.
            stats.timings["decode"] = stats.timings["total"] - stats.timings["first_token"]

    def _stream_once(
        self, body: dict[str, Any], stats: GenerationStats, start: float
    ) -> Iterator[str]:
        chunks = 0
        with self.client.open_stream("chat/completions", body, what="a chat completion") as resp:
            ctype = resp.headers.get("content-type", "")
            if "text/event-stream" not in ctype:
                # A server that ignores stream=True answers with one JSON completion.
                yield from self._from_full_response(resp, stats, start)
                return
            done = False
            for payload in iter_sse_data(resp.iter_lines()):
                if payload == DONE:
                    done = True
                    break
                try:
                    chunk = parse_chunk(payload)
                except SSEError as exc:
                    raise RemoteModelError(
                        f"Remote model server {self.client.shown_url}: {exc}"
                    ) from None
                usage = chunk.get("usage")
                if usage:
                    stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                    stats.output_tokens = int(usage.get("completion_tokens") or 0)
                text, finish = chunk_delta(chunk)
                if finish:
                    stats.finish_reason = finish
                if text:
                    chunks += 1
                    stats.timings.setdefault("first_token", time.perf_counter() - start)
                    yield text
            if not done and not stats.finish_reason:
                raise RemoteModelError(
                    f"The stream from {self.client.shown_url} ended early (no end marker);"
                    " the reply was cut off."
                )
        if not stats.output_tokens:
            stats.output_tokens = chunks  # no usage block: one chunk is one token on vLLM

    def _from_full_response(
        self, resp: httpx.Response, stats: GenerationStats, start: float
    ) -> Iterator[str]:
        try:
            data = json.loads(resp.read())
            choice = data["choices"][0]
            text = (choice.get("message") or {}).get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise RemoteModelError(
                f"Remote model server {self.client.shown_url} sent an unreadable completion."
            ) from None
        usage = data.get("usage") or {}
        stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        stats.output_tokens = int(usage.get("completion_tokens") or 0)
        stats.finish_reason = choice.get("finish_reason") or ""
        stats.timings["first_token"] = time.perf_counter() - start
        if text:
            yield text

    # --- tokens ---------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special_tokens: bool) -> list[int] | None:
        """Token ids from the server's /tokenize (vLLM or llama-server), None if absent."""
        if self._tokenize_style in (None, "vllm"):
            status, data = self.client.request_json(
                "POST",
                "tokenize",
                {"model": self.model, "prompt": text, "add_special_tokens": add_special_tokens},
                what="tokenize",
                root=True,
            )
            if status != 404 and isinstance(data, dict) and "tokens" in data:
                self._tokenize_style = "vllm"
                return [int(t) for t in data["tokens"]]
        if self._tokenize_style in (None, "llamacpp"):
            status, data = self.client.request_json(
                "POST",
                "tokenize",
                {"content": text, "add_special": add_special_tokens},
                what="tokenize",
                root=True,
            )
            if status != 404 and isinstance(data, dict) and "tokens" in data:
                self._tokenize_style = "llamacpp"
                return [int(t) for t in data["tokens"]]
        if self._tokenize_style is None:
            log.warning(
                "remote %s has no /tokenize endpoint; token counts are estimates",
                self.client.shown_url,
            )
        self._tokenize_style = "none"
        return None

    def count_tokens(self, text: str) -> int:
        tokens = self.tokenize(text, add_special_tokens=False)
        if tokens is not None:
            return len(tokens)
        # Conservative (over-)estimate for budget checks: ~3 characters per token.
        return math.ceil(len(text) / 3)

    # --- evaluation -----------------------------------------------------------------
    def loglikelihood(self, context: str, continuations: Sequence[str]) -> list[float]:
        """Sum of log P(continuation tokens | context) per continuation.

        Context and continuation are tokenised separately and joined as token ids (the
        lm-eval-harness convention), so the continuation's tokens are exactly known; the
        server echoes the prompt with per-token log-probabilities (one batched request).
        """
        if not continuations:
            return []
        ctx_ids = self.tokenize(context, add_special_tokens=True)
        if ctx_ids is None:
            raise RemoteModelError(
                f"Remote model server {self.client.shown_url} offers no /tokenize endpoint, "
                "so it cannot score answers by log-likelihood (vLLM can)."
            )
        conts: list[list[int]] = []
        for text in continuations:
            ids = self.tokenize(text, add_special_tokens=False) or []
            if not ids:
                raise ConfigError(f"Continuation {text!r} has no tokens to score.")
            conts.append(ids)
        body = {
            "model": self.model,
            "prompt": [ctx_ids + ids for ids in conts],
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        status, data = self.client.request_json(
            "POST", "completions", body, what="log-likelihood scoring"
        )
        choices = data.get("choices") if status != 404 and isinstance(data, dict) else None
        if not choices or len(choices) != len(conts):
            raise RemoteModelError(
                f"Remote model server {self.client.shown_url} did not return one completion "
                "per continuation; it may not support batched completions with echo."
            )
        scores: list[float] = []
        for choice, ids in zip(
            sorted(choices, key=lambda c: c.get("index", 0)), conts, strict=True
        ):
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
            if not logprobs or len(logprobs) < len(ctx_ids) + len(ids):
                raise RemoteModelError(
                    f"Remote model server {self.client.shown_url} returned no prompt "
                    "log-probabilities (it needs completions with echo=true and logprobs)."
                )
            span = logprobs[len(ctx_ids) : len(ctx_ids) + len(ids)]
            if any(v is None for v in span):
                raise RemoteModelError("Remote server left continuation log-probabilities empty.")
            scores.append(float(sum(span)))
        return scores


# --- loading -----------------------------------------------------------------------------
def _option(opts: dict[str, Any], name: str, default: float) -> float:
    value = opts.get(name, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"openai: option {name}={value!r} is not a number.") from None


def _api_key(opts: dict[str, Any], settings: Any) -> SecretStr | None:
    """`api_key_env` (a per-model environment variable) beats settings.remote_api_key."""
    env_name = opts.get("api_key_env")
    if env_name:
        value = os.environ.get(str(env_name))
        if not value:
            raise ConfigError(f"Environment variable {env_name} (api_key_env) is not set.")
        return SecretStr(value)
    key = getattr(settings, "remote_api_key", None) if settings is not None else None
    return SecretStr(key) if isinstance(key, str) else key


def _pick_model(client: RemoteClient, wanted: str | None) -> tuple[str, str]:
    """(model name, server-reported identity) via GET /models."""
    status, data = client.request_json("GET", "models", what="the model list")
    listed = (data or {}).get("data", []) if status != 404 and isinstance(data, dict) else []
    served = [m for m in listed if isinstance(m, dict)]
    names = [str(m.get("id")) for m in served]
    if wanted:
        if f"{wanted}:latest" in names and wanted not in names:
            wanted = f"{wanted}:latest"  # Ollama lists tags in full; requests may omit it
        if served and wanted not in names:
            raise RemoteModelError(
                f"Remote model server {client.shown_url} does not serve {wanted!r}; "
                f"it serves: {', '.join(names) or 'nothing'}."
            )
        entry = next((m for m in served if m.get("id") == wanted), {})
        return wanted, str(entry.get("root") or wanted)
    if len(served) == 1:
        return names[0], str(served[0].get("root") or names[0])
    raise ConfigError(
        f"Say which model to use on {client.shown_url}: openai:{client.shown_url}?model=NAME"
        + (f" (it serves: {', '.join(names)})." if names else ".")
    )


def load_generator(record: ModelRecord, settings: Any = None) -> OpenAIRemoteGenerator:
    """Connect to the server named by an `openai:` record (checks it answers)."""
    source = record.parsed_source
    if source.scheme != "openai":
        raise ConfigError(f"Model {record.id!r} is not an openai: source.")
    opts: dict[str, Any] = {**record.options, **source.options}
    api_key = _api_key(opts, settings)
    retry = RetryPolicy(
        max_retries=int(_option(opts, "max_retries", 3)),
        backoff_base_s=_option(opts, "backoff_base_s", 0.5),
        backoff_max_s=_option(opts, "backoff_max_s", 8.0),
    )
    client = RemoteClient(
        source.location,
        api_key=api_key,
        timeout_s=_option(opts, "timeout_s", 120.0),
        connect_timeout_s=_option(opts, "connect_timeout_s", 10.0),
        retry=retry,
    )
    host = (urlsplit(source.location).hostname or "").lower()
    if (
        api_key is not None
        and source.location.startswith("http://")
        and host not in ("127.0.0.1", "localhost", "::1")
    ):
        log.warning("the API key for %s travels over plain HTTP; use https://", client.shown_url)
    try:
        model, served_as = _pick_model(client, opts.get("model"))
    except Exception:
        client.close()
        raise
    info = BackendInfo(
        model_id=record.id,
        backend="openai",
        source=f"openai:{client.shown_url}?model={model}",
        revision=record.revision,
        weights_hash=f"server:{served_as}",
        dtype="remote",
        device=client.shown_url,
        is_test=record.is_test,
    )
    return OpenAIRemoteGenerator(client, model, info)
