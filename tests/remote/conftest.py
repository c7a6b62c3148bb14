"""A scripted fake OpenAI-compatible server on 127.0.0.1 (threaded stdlib http.server).

Each test queues replies; the server records every request (path, headers, JSON body).
It also implements a toy /tokenize (one token per character: id = ord(c)) and
completions with echo+logprobs (log-prob of token t = -(t % 7) / 10) so that
log-likelihood scoring can be checked exactly.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

BOS = 2


def toy_logprob(token: int) -> float:
    return -(token % 7) / 10


@dataclass
class Reply:
    status: int = 200
    json_body: Any = None
    sse: list[str] | None = None  # raw `data:` payloads (already JSON text)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    cut_after: int | None = None  # close the connection after this many SSE events


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out / hang up on purpose cause broken pipes here


class FakeOpenAI:
    def __init__(self) -> None:
        # Helpers reachable through the fixture (test modules cannot import conftest).
        self.Reply = Reply
        self.sse = sse_chunks
        self.replies: dict[str, list[Reply]] = {}
        self.requests: list[Seen] = []
        self.models = [{"id": "fake-model", "object": "model", "root": "/models/fake"}]
        self.tokenize_enabled = True
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def queue(self, path: str, *replies: Reply) -> None:
        self.replies.setdefault(path, []).extend(replies)

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- default behaviour when no reply is queued --------------------------------
    def default(self, path: str, body: Any) -> Reply:
        if path == "/v1/models":
            return Reply(json_body={"object": "list", "data": self.models})
        if path == "/tokenize" and self.tokenize_enabled:
            prompt = body.get("prompt", "")
            ids = ([BOS] if body.get("add_special_tokens") else []) + [ord(c) for c in prompt]
            return Reply(json_body={"tokens": ids, "count": len(ids)})
        if path == "/v1/completions":
            choices = []
            for i, ids in enumerate(body["prompt"]):
                lps: list[float | None] = [None] + [toy_logprob(t) for t in ids[1:]]
                choices.append({"index": i, "text": "x", "logprobs": {
                    "tokens": [str(t) for t in ids] + ["x"],
                    "token_logprobs": [*lps, -0.5]}})
            return Reply(json_body={"choices": choices})
        return Reply(status=404, json_body={"error": {"message": f"no route {path}"}})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                fake.requests.append(Seen(self.command, self.path, dict(self.headers), body))
                queue = fake.replies.get(self.path)
                reply = queue.pop(0) if queue else fake.default(self.path, body)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.sse is not None:
                    self._send_sse(reply)
                    return
                data = json.dumps(reply.json_body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _chunk(self, data: bytes) -> None:
                # Chunked transfer encoding, as vLLM/uvicorn stream: a cut is detectable.
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _send_sse(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for i, payload in enumerate(reply.sse or []):
                    if reply.cut_after is not None and i >= reply.cut_after:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)  # dies mid-body
                        return
                    self._chunk(f"data: {payload}\n\n".encode())
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            do_GET = _serve
            do_POST = _serve

        return Handler


def sse_chunks(pieces: list[str], *, usage: tuple[int, int] | None = None,
               finish: str = "stop") -> list[str]:
    out = []
    for i, text in enumerate(pieces):
        last = i == len(pieces) - 1
        out.append(json.dumps({"choices": [{"index": 0, "delta": {"content": text},
                                            "finish_reason": finish if last else None}]}))
    if usage:
        out.append(json.dumps({"choices": [], "usage": {
            "prompt_tokens": usage[0], "completion_tokens": usage[1]}}))
    return out


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    try:
        yield server
    finally:
        server.close()
