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


def _grey_photo_png() -> bytes:
    """scikit-image's greyscale camera-man photo: greyscale, but plainly no radiograph."""
    import io

    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.camera()).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("stream", [False, True])
def test_a_grey_photo_is_refused_by_the_image_gate(client_factory, tiny_test_models, cxr_png,
                                                   stream):
    """The same chest X-ray gate as an upload: 422 `image_refused` with the gate's reason,
    before any generation (a stream never starts)."""
    with client_factory() as client:
        r = client.post("/v1/chat/completions", json=_body(_grey_photo_png(), stream=stream))
        upload = client.post("/v1/studies",
                             files=[("files", ("p.png", _grey_photo_png(), "image/png"))])
        ok = client.post("/v1/chat/completions", json=_body(cxr_png))
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "image_refused" and err["type"] == "invalid_request_error"
    assert "does not look like a chest radiograph" in err["message"]
    # the upload path refuses the same image with the same code and reason
    assert upload.status_code == 422
    assert upload.json()["error"]["code"] == "image_refused"
    reason = err["message"].split(": ", 1)[1]
    assert reason in upload.json()["error"]["message"]
    assert ok.status_code == 200, ok.text  # a real chest X-ray still gets its answer
