"""The openai: backend against a scripted local fake server (no network, no model)."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket

import pytest
from PIL import Image
from pydantic import SecretStr

from medlens.errors import ConfigError, RemoteModelError
from medlens.models.backends import openai_remote
from medlens.models.backends.openai_http import RemoteClient, RetryPolicy
from medlens.models.protocols import (
    ChatMessage,
    GenerationConfig,
    GenerationStats,
    Generator,
    ImagePart,
    LoglikelihoodScorer,
    TextPart,
    collect,
)
from medlens.models.registry import ModelRecord

CHAT = "/v1/chat/completions"
SECRET = "sk-test-5ecret-DO-NOT-LEAK-9f31"


class FakeSettings:
    def __init__(self, key: str | None = None) -> None:
        self.remote_api_key = SecretStr(key) if key else None


def record(url: str, **options: object) -> ModelRecord:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return ModelRecord(id="remote-test", kind="generator",
                       source=f"openai:{url}" + (f"?{query}" if query else ""))


def load(fake, key: str | None = None, **options: object) -> openai_remote.OpenAIRemoteGenerator:
    opts = {"model": "fake-model", "backoff_base_s": 0.01, "backoff_max_s": 0.05, **options}
    return openai_remote.load_generator(record(fake.url, **opts), FakeSettings(key))


def ask(text: str = "Describe this X-ray") -> list[ChatMessage]:
    return [ChatMessage.text("system", "You are an expert radiologist."),
            ChatMessage.text("user", text)]


def test_streams_text_usage_and_request_fields(fake_server):
    fake_server.queue(CHAT, fake_server.Reply(sse=fake_server.sse(
        ["No acute", " findings", "."], usage=(42, 3))))
    gen = load(fake_server)
    assert isinstance(gen, Generator) and isinstance(gen, LoglikelihoodScorer)
    stats = GenerationStats()
    pieces = list(gen.stream(ask(), GenerationConfig(max_new_tokens=50, stop=("END",)), stats))
    assert pieces == ["No acute", " findings", "."]
    assert (stats.prompt_tokens, stats.output_tokens, stats.finish_reason) == (42, 3, "stop")
    assert stats.timings["total"] >= stats.timings["first_token"] >= 0
    body = fake_server.seen(CHAT)[0].body
    assert body["model"] == "fake-model" and body["stream"] is True
    assert body["max_tokens"] == 50 and body["temperature"] == 0.0 and body["stop"] == ["END"]
    assert body["messages"] == [
        {"role": "system", "content": "You are an expert radiologist."},
        {"role": "user", "content": "Describe this X-ray"},
    ]
    assert gen.info.backend == "openai" and gen.info.weights_hash == "server:/models/fake"


def test_images_travel_as_png_data_urls_in_order(fake_server):
    fake_server.queue(CHAT, fake_server.Reply(sse=fake_server.sse(["ok"])))
    img = Image.new("L", (32, 24), 0)
    img.putpixel((3, 4), 200)
    msg = ChatMessage("user", (ImagePart(img, key="abc"), TextPart("What is shown?")))
    text, stats = collect(load(fake_server), [msg], GenerationConfig())
    assert text == "ok" and stats.images_encoded == 1
    content = fake_server.seen(CHAT)[0].body["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url", "text"]
    url = content[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (32, 24) and decoded.getpixel((3, 4)) == 200


def test_retries_5xx_then_succeeds(fake_server):
    fake_server.queue(CHAT, fake_server.Reply(status=503, json_body={"error": "busy"}),
                      fake_server.Reply(status=502, json_body={}),
                      fake_server.Reply(sse=fake_server.sse(["fine"])))
    text, _ = collect(load(fake_server), ask(), GenerationConfig())
    assert text == "fine"
    assert len(fake_server.seen(CHAT)) == 3


def test_retry_after_is_honoured_and_backoff_bounded(fake_server):
    fake_server.queue("/v1/models",
                      fake_server.Reply(status=429, headers={"Retry-After": "0.25"},
                                        json_body={"error": {"message": "slow down"}}),
                      fake_server.Reply(status=500, json_body={}))
    waits: list[float] = []
    client = RemoteClient(fake_server.url, retry=RetryPolicy(max_retries=3, backoff_base_s=0.1,
                                                             backoff_max_s=0.2),
                          sleep=waits.append)
    status, data = client.request_json("GET", "models", what="models")
    assert status == 200 and data["data"][0]["id"] == "fake-model"
    # Retry-After (0.25) capped at backoff_max_s; then jittered backoff within [0, 0.1*2].
    assert waits[0] == pytest.approx(0.2) and 0 <= waits[1] <= 0.2
    assert len(waits) == 2


def test_gives_up_after_bounded_retries_naming_url(fake_server):
    for _ in range(5):
        fake_server.queue(CHAT, fake_server.Reply(status=503, json_body={"error": {
            "message": "overloaded"}}))
    gen = load(fake_server, max_retries=2)
    with pytest.raises(RemoteModelError) as err:
        collect(gen, ask(), GenerationConfig())
    assert fake_server.url in str(err.value) and "503" in str(err.value)
    assert "overloaded" in str(err.value)
    assert len(fake_server.seen(CHAT)) == 3  # first try + 2 retries


def test_client_errors_are_not_retried(fake_server):
    fake_server.queue(CHAT, fake_server.Reply(status=400, json_body={"error": {
        "message": "max_tokens is too large"}}))
    with pytest.raises(RemoteModelError, match="max_tokens is too large"):
        collect(load(fake_server), ask(), GenerationConfig())
    assert len(fake_server.seen(CHAT)) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_a_clear_error():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    rec = record(url, model="m", max_retries=1, backoff_base_s=0.01)
    with pytest.raises(RemoteModelError) as err:
        openai_remote.load_generator(rec, FakeSettings())
    msg = str(err.value)
    assert url in msg and "connection refused" in msg and "2 attempt" in msg


def test_read_timeout_is_retried_then_reported(fake_server):
    fake_server.queue(CHAT, fake_server.Reply(sse=fake_server.sse(["late"]), delay_s=1.0),
                      fake_server.Reply(sse=fake_server.sse(["late"]), delay_s=1.0))
    gen = load(fake_server, timeout_s=0.2, max_retries=1)
    with pytest.raises(RemoteModelError, match="timed out"):
        collect(gen, ask(), GenerationConfig())
    assert len(fake_server.seen(CHAT)) == 2


def test_stream_cut_midway_is_reported_not_retried(fake_server):
    fake_server.queue(CHAT, fake_server.Reply(sse=fake_server.sse(["one", " two", " three"]),
                                              cut_after=1))
    gen = load(fake_server)
    got: list[str] = []
    with pytest.raises(RemoteModelError, match=r"cut off|stream"):
        for piece in gen.stream(ask(), GenerationConfig()):
            got.append(piece)
    assert got == ["one"]
    assert len(fake_server.seen(CHAT)) == 1


def test_error_event_inside_stream(fake_server):
    fake_server.queue(CHAT, fake_server.Reply(sse=[json.dumps({"error": {
        "message": "out of KV cache"}})]))
    with pytest.raises(RemoteModelError, match="out of KV cache"):
        collect(load(fake_server), ask(), GenerationConfig())


def test_server_ignoring_stream_flag_still_works(fake_server):
    fake_server.queue(CHAT, fake_server.Reply(json_body={
        "choices": [{"message": {"content": "whole answer"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2}}))
    text, stats = collect(load(fake_server), ask(), GenerationConfig())
    assert text == "whole answer" and stats.finish_reason == "length"
    assert stats.output_tokens == 2


def test_api_key_sent_but_never_logged_or_shown(fake_server, caplog):
    caplog.set_level(logging.DEBUG)  # httpx/httpcore debug logs included
    fake_server.queue(CHAT, fake_server.Reply(status=503, json_body={}),
                      fake_server.Reply(sse=fake_server.sse(["hi"])))
    gen = load(fake_server, key=SECRET)
    collect(gen, ask(), GenerationConfig())
    assert all(r.headers.get("Authorization") == f"Bearer {SECRET}"
               for r in fake_server.requests)
    fake_server.queue(CHAT, fake_server.Reply(status=401, json_body={"error": {
        "message": "invalid api key"}}))
    with pytest.raises(RemoteModelError) as err:
        collect(gen, ask(), GenerationConfig())
    assert "API key" in str(err.value)
    shown = [str(err.value), repr(err.value), repr(gen), repr(gen.client), repr(gen.info),
             caplog.text]
    assert caplog.records  # the retry was logged...
    assert not any(SECRET in s for s in shown)  # ...without the key


def test_no_key_no_auth_header(fake_server):
    fake_server.queue(CHAT, fake_server.Reply(sse=fake_server.sse(["hi"])))
    collect(load(fake_server), ask(), GenerationConfig())
    assert "Authorization" not in fake_server.seen(CHAT)[0].headers


def test_credentials_in_url_are_redacted(fake_server):
    url = fake_server.url.replace("127.0.0.1", "user:pa55word@127.0.0.1")
    gen = openai_remote.load_generator(record(url, model="fake-model"), FakeSettings())
    assert "pa55word" not in gen.info.source + gen.info.device + repr(gen)


def test_model_choice(fake_server):
    gen = openai_remote.load_generator(record(fake_server.url), FakeSettings())
    assert gen.model == "fake-model"  # the only one served
    with pytest.raises(RemoteModelError, match="does not serve 'other'"):
        openai_remote.load_generator(record(fake_server.url, model="other"), FakeSettings())
    fake_server.models.append({"id": "medgemma:latest"})  # Ollama-style tag
    assert openai_remote.load_generator(record(fake_server.url, model="medgemma"),
                                        FakeSettings()).model == "medgemma:latest"
    with pytest.raises(ConfigError, match="fake-model, medgemma:latest"):
        openai_remote.load_generator(record(fake_server.url), FakeSettings())


def test_loglikelihood_uses_separately_tokenised_ids(fake_server):
    gen = load(fake_server)
    context, conts = "Q: 2+2? A:", [" 4", " five"]
    scores = gen.loglikelihood(context, conts)
    expected = [sum(-(ord(c) % 7) / 10 for c in cont) for cont in conts]
    assert scores == pytest.approx(expected)
    body = fake_server.seen("/v1/completions")[0].body
    ctx_ids = [2] + [ord(c) for c in context]
    assert body["prompt"] == [ctx_ids + [ord(c) for c in cont] for cont in conts]
    assert body["echo"] is True and body["logprobs"] >= 1


def test_loglikelihood_without_prompt_logprobs_fails_clearly(fake_server):
    fake_server.queue("/v1/completions", fake_server.Reply(json_body={"choices": [
        {"index": 0, "text": "x", "logprobs": None}]}))
    with pytest.raises(RemoteModelError, match="log-probabilities"):
        load(fake_server).loglikelihood("ctx", [" a"])


def test_count_tokens_via_server_and_fallback(fake_server):
    gen = load(fake_server)
    assert gen.count_tokens("hello") == 5
    fake_server.tokenize_enabled = False
    gen2 = load(fake_server)
    assert gen2.count_tokens("abcdefg") == 3  # estimate, rounded up
    with pytest.raises(RemoteModelError, match="tokenize"):
        gen2.loglikelihood("ctx", [" a"])


def test_per_model_api_key_from_environment(fake_server, monkeypatch):
    monkeypatch.setenv("MY_VLLM_KEY", "sk-other")
    fake_server.queue(CHAT, fake_server.Reply(sse=fake_server.sse(["hi"])))
    gen = load(fake_server, key=SECRET, api_key_env="MY_VLLM_KEY")
    collect(gen, ask(), GenerationConfig())
    assert fake_server.seen(CHAT)[0].headers["Authorization"] == "Bearer sk-other"
    monkeypatch.delenv("MY_VLLM_KEY")
    with pytest.raises(ConfigError, match="MY_VLLM_KEY"):
        load(fake_server, api_key_env="MY_VLLM_KEY")
