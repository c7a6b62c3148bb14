"""Against a real `medlens serve` process: the streaming cap on the wire, and the CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def test_streamed_body_without_length_gets_413_while_sending(spawn_server, tmp_path):
    """Chunked upload of 'endless' data: the 413 arrives long before the client is done."""
    server = spawn_server(tmp_path / "data", env={"MEDLENS_MAX_UPLOAD_MB": "2"})
    try:
        _check_streamed_413(server)
    finally:
        server.stop()


def _check_streamed_413(server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"POST /v1/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: multipart/form-data; boundary=xyz\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    head = (b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
            b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n")
    sock.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
    chunk = b"\0" * (256 * 1024)
    sent = 0
    response = b""
    sock.settimeout(0.05)
    try:
        for _ in range(8 * 1024):  # up to 2 GiB
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            try:
                data = sock.recv(65536)
                if data:
                    response += data
                    break
            except TimeoutError:
                continue
        sock.settimeout(5)
        while b"\r\n\r\n" not in response:
            more = sock.recv(65536)
            if not more:
                break
            response += more
    finally:
        sock.close()
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < 32 * 1024 * 1024, sent  # cap is 2 MB; nowhere near the 2 GiB offered
    # The server is fine afterwards.
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_serve_refuses_public_bind_without_token(tmp_path):
    env = {"MEDLENS_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "medlens.cli.main", "serve", "--host", "0.0.0.0",
                           "--port", "8799"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Refusing to listen on 0.0.0.0" in proc.stderr
    assert time.monotonic() - start < 60
