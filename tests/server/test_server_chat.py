"""`/v1/chat/completions`: a request's inputs are built once, streamed or not."""

from __future__ import annotations

import base64
import json

import pytest

from medlens.disclaimer import DISCLAIMER
from medlens.server.openai_shapes import ChatCompletion, ChatCompletionChunk
from medlens.server.services import chat


@pytest.fixture
def counted_images(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times an image_url part was decoded and preprocessed."""
    calls: list[int] = []
    real = chat._image_part

    def counting(data, generator, settings):
        calls.append(len(data))
        return real(data, generator, settings)

    monkeypatch.setattr(chat, "_image_part", counting)
    return calls


def _body(cxr_png: bytes, **extra) -> dict:
    data_url = "data:image/png;base64," + base64.b64encode(cxr_png).decode()
    return {"max_tokens": 6, **extra, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe this X-ray."},
        {"type": "image_url", "image_url": {"url": data_url}}]}]}


def test_stream_decodes_each_image_once(client_factory, tiny_test_models, cxr_png,
                                        counted_images):
    with client_factory() as client, client.stream(
            "POST", "/v1/chat/completions", json=_body(cxr_png, stream=True)) as s:
        assert s.status_code == 200
        lines = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(line) for line in lines[:-1]]
    assert chunks[0].choices[0].delta == {"role": "assistant", "content": ""}
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert counted_images == [len(cxr_png)]  # prepared before the 200, streamed as is


def test_completion_has_the_openai_shape_and_decodes_once(client_factory, tiny_test_models,
                                                           cxr_png, counted_images):
    with client_factory() as client:
        r = client.post("/v1/chat/completions", json=_body(cxr_png))
        models = client.get("/v1/models").json()
    assert r.status_code == 200, r.text
    out = ChatCompletion.model_validate(r.json())
    assert out.disclaimer == DISCLAIMER and out.usage.completion_tokens >= 1
    assert set(r.json()) == set(ChatCompletion.model_fields)
    assert counted_images == [len(cxr_png)]
    assert models == {"object": "list", "data": [
        {"id": "medlens/test-medgemma", "object": "model", "created": 0, "owned_by": "medlens"}]}


def test_a_bad_image_fails_before_the_stream_starts(client_factory, tiny_test_models):
    bad = "data:image/png;base64," + base64.b64encode(b"PK\x03\x04" + b"0" * 64).decode()
    body = {"stream": True, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": bad}}]}]}
    with client_factory() as client:
        r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 415
    assert json.loads(r.text)["error"]["type"] == "invalid_request_error"
