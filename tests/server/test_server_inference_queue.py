"""Probe finding: 50 concurrent chats stalled the whole API (`GET /v1/studies` took 17.6 s)
because each waited on a semaphore inside the shared thread pool, with no cap on the
line. Chats now wait on their own bounded queue: the API stays fast, and a chat beyond
the queue's depth gets 429 at once, in OpenAI's error shape."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from medlens.server.app import create_app
from medlens.server.inference import inference_queue
from medlens.server.routes import openai_compat
from medlens.server.services import chat

from .conftest import BASE_URL, make_settings

WAITING = 50
BODY = {"messages": [{"role": "user", "content": "Is this report normal?"}], "max_tokens": 4}


class _SlowGenerator:
    """Stands in for a model busy for as long as the test holds `gate` shut."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def stream(self, messages: Any, config: Any, stats: Any) -> Any:
        assert self.gate.wait(60), "the test never opened the gate"
        yield "ok"


@pytest.fixture
def slow_model(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    gate = threading.Event()
    generator = _SlowGenerator(gate)
    session = SimpleNamespace(generator=lambda settings=None: generator)
    monkeypatch.setattr(openai_compat, "default_session", lambda: session)
    prepared = SimpleNamespace(messages=[], config=None, model="slow-fake", fingerprint=None)
    monkeypatch.setattr(chat, "prepare", lambda req, gen, settings: prepared)
    return gate


async def _scenario(app: Any, gate: threading.Event) -> tuple[list[float], httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=60) as client,
    ):
        chats = [asyncio.create_task(client.post("/v1/chat/completions", json=BODY))
                 for _ in range(WAITING)]  # fmt: skip
        queue = inference_queue(app.state.medlens)
        deadline = time.monotonic() + 20
        while queue.admitted < WAITING and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert queue.admitted == WAITING  # one running, the rest waiting
        try:
            overflow = await asyncio.wait_for(
                client.post("/v1/chat/completions", json=BODY), timeout=2
            )
            latencies = []
            for _ in range(50):
                t0 = time.perf_counter()
                try:
                    r = await asyncio.wait_for(client.get("/v1/studies"), timeout=5)
                    assert r.status_code == 200, r.text
                    latencies.append(time.perf_counter() - t0)
                except TimeoutError:
                    latencies.append(5.0)  # stalled behind the chats (the old behaviour)
        finally:
            gate.set()
            done = await asyncio.gather(*chats)
        assert [r.status_code for r in done] == [200] * WAITING
        assert queue.admitted == 0  # every place was given back
        return latencies, overflow


def test_waiting_chats_keep_the_api_fast_and_the_overflow_gets_429(tmp_path, slow_model):
    settings = make_settings(tmp_path / "data", workers=1, inference_queue_depth=WAITING - 1)
    app = create_app(settings, run_jobs=False)
    latencies, overflow = asyncio.run(_scenario(app, slow_model))
    p99 = sorted(latencies)[max(0, int(len(latencies) * 0.99) - 1)]
    assert p99 < 0.2, f"GET /v1/studies p99 {p99 * 1000:.0f} ms while {WAITING} chats wait"
    assert overflow.status_code == 429
    error = overflow.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "inference_queue_full")
    assert set(error) == {"message", "type", "param", "code"}


def test_a_stream_gives_its_place_back(client_factory, slow_model):
    slow_model.set()
    with client_factory(workers=1, inference_queue_depth=0) as client:
        for _ in range(3):  # depth 0: a place that leaked would refuse the next one
            with client.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as s:
                assert s.status_code == 200
                assert "[DONE]" in "".join(s.iter_text())
        queue = inference_queue(client.app.state.medlens)
        deadline = time.monotonic() + 5
        while queue.admitted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queue.admitted == 0
