"""The first hour with MedLens, driven as a new user would (issue 23, first "Done when"):
`medlens serve --demo` in its own folder and a page upload under the DEMO banner (a frontal,
a lateral and a dated prior, whose roles the study page shows); then a real-mode server on
the same machine (same HOME, default data folder) that shows no demo study anywhere; every
refusal path with its reason; a 5,000-character unbroken model output that keeps the page
within the viewport. Screenshots: test-artifacts/first-hour-*.png."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.disclaimer import DEMO_BANNER

from .conftest import TINY_ENCODER, ServerProcess, free_port
from .test_server_browser import ARTIFACTS, open_page

pytestmark = pytest.mark.browser
TOKEN = "X" * 5000  # one unbroken token of model output


def _serve(home: Path, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """`medlens serve ARGS` with HOME=home and no MEDLENS_DATA_DIR: the default folders."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in ("MEDLENS_DATA_DIR", "MEDLENS_DEMO")}
    full_env = {**base, "HOME": str(home), "MEDLENS_ENCODER": TINY_ENCODER, **(env or {})}
    log = home / f"server-{port}.log"
    cmd = [sys.executable, "-m", "medlens.cli.main", "serve", *args, "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return ServerProcess(proc, url, port, home / ".medlens", log)
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("first-hour") / "home"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def demo_server(home: Path, tiny_test_models) -> Iterator[ServerProcess]:
    srv = _serve(home, "--demo")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def real_server(home: Path, tiny_test_models) -> Iterator[ServerProcess]:
    """Real mode on the default folder; its generator is the scripted test model, told to
    answer every request with one unbroken 5,000-character token."""
    script = home / "long.toml"
    texts = {k: f"Findings: {TOKEN}\nImpression: {TOKEN}" for k in ("report", "other")}
    texts |= {"grounding": "[]", "comparison": TOKEN}
    script.write_text('name = "long"\nversion = "1"\n'
                      + "".join(f"{k} = {json.dumps(v)}\n" for k, v in texts.items()))
    from medlens.config import Settings
    from medlens.models.testmodels import ensure_test_models

    ensure_test_models(Settings(data_dir=home / ".medlens"), realtext=False)  # the encoder
    entry = [{"id": "medlens/test-scripted", "kind": "generator", "source": f"scripted:{script}"}]
    srv = _serve(home, "--no-demo", env={"MEDLENS_GENERATOR": "medlens/test-scripted",
                                         "MEDLENS_MODELS": json.dumps(entry),
                                         "MEDLENS_MAX_UPLOAD_MB": "2"})  # fmt: skip
    yield srv
    srv.stop()


def _grey_photo() -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.camera()).save(buf, format="PNG")  # greyscale, but a photograph
    return buf.getvalue()


def _wait(url: str, job: str) -> dict:
    for _ in range(600):
        got = httpx.get(f"{url}/v1/jobs/{job}", timeout=10).json()
        if got["status"] in ("done", "failed"):
            return got
        time.sleep(0.2)
    raise AssertionError(f"job {job} did not finish")


def test_demo_upload_with_roles_then_a_real_server_shows_no_demo_study(
    home: Path, demo_server: ServerProcess, real_server: ServerProcess, nih_images: list[Path]
) -> None:
    demo_dir = home / ".medlens" / "demo"
    assert f"(data: {demo_dir})" in demo_server.log.read_text()  # the CLI's own resolution
    front, side, prior = (str(p) for p in nih_images[:3])
    with open_page(60_000) as (page, errors):
        page.goto(demo_server.url + "/")
        assert page.get_by_test_id("demo-banner").inner_text() == DEMO_BANNER
        page.set_input_files("#file-input", [front, side])
        views = page.locator("#file-list [data-testid=file-view]")
        views.nth(0).select_option("frontal")
        views.nth(1).select_option("lateral")
        page.check("input[name=prior_mode][value=upload]")
        page.set_input_files("#prior-input", prior)
        page.fill("input[name=prior_date]", "2026-11-01")
        page.click("#submit-btn")
        page.wait_for_url("**/studies/*")
        demo_id = page.url.rstrip("/").rsplit("/", 1)[1]
        assert page.get_by_test_id("demo-banner").inner_text() == DEMO_BANNER
        roles = sorted(r.strip() for r in page.get_by_test_id("image-role").all_inner_texts())
        assert roles[:2] == ["Current · frontal", "Current · lateral"]
        assert roles[2].startswith("Prior") and roles[2].endswith("2026-11-01")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "first-hour-demo.png"), full_page=True)

        # the real-mode server on the same machine: no demo study in any view
        assert httpx.get(f"{demo_server.url}/v1/studies/{demo_id}").json()["context"]["demo"]
        _assert_no_demo_study(page, real_server, demo_id)
        assert not errors, errors
        # even one pointed at the demo folder itself: the demo mark keeps the study out
        same_folder = _serve(home, "--no-demo", env={"MEDLENS_DATA_DIR": str(demo_dir)})
        try:
            _assert_no_demo_study(page, same_folder, demo_id)
        finally:
            same_folder.stop()


def _assert_no_demo_study(page: Any, server: ServerProcess, demo_id: str) -> None:
    """History page, API list and the study's own URLs of a real-mode server."""
    listed = httpx.get(f"{server.url}/v1/studies").json()["studies"]
    assert demo_id not in [s["id"] for s in listed]
    assert httpx.get(f"{server.url}/v1/studies/{demo_id}").status_code == 404
    assert httpx.get(f"{server.url}/studies/{demo_id}").status_code == 404
    page.goto(server.url + "/")
    assert page.get_by_test_id("demo-banner").count() == 0
    assert demo_id not in page.content()


def _refusal(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"].endswith("."), error
    return error["message"]


def test_every_refusal_path_answers_with_a_reason(
    real_server: ServerProcess, nih_images: list[Path], dicom_dir: Path, tmp_path: Path
) -> None:
    photo, cxr = _grey_photo(), nih_images[0].read_bytes()
    before = httpx.get(f"{real_server.url}/v1/studies").json()["studies"]
    dicom = (dicom_dir / "RG1_J2KI.dcm").read_bytes()

    def upload(name: str, data: bytes) -> httpx.Response:
        return httpx.post(f"{real_server.url}/v1/studies", timeout=60,
                          files=[("files", (name, data, "application/octet-stream"))])

    grey = _refusal(upload("camera.png", photo), 422, "image_refused")
    assert "does not look like a chest radiograph" in grey
    assert "truncated" in _refusal(upload("cut.dcm", dicom[: len(dicom) - 20 * 1024]), 422,
                                   "truncated_image")  # fmt: skip
    assert "CT" in _refusal(upload("CT_small.dcm", (dicom_dir / "CT_small.dcm").read_bytes()),
                            422, "image_refused")  # fmt: skip
    # not an image at all, and a body over the cap: their own statuses, still with a reason
    assert "PNG, JPEG and DICOM" in _refusal(upload("notes.png", b"PK\x03\x04" + b"\0" * 200),
                                            415, "unsupported_media_type")  # fmt: skip
    too_big = upload("big.png", cxr + b"\0" * (3 * 1024 * 1024))
    assert too_big.status_code == 413 and too_big.json()["error"]["message"]
    assert httpx.get(f"{real_server.url}/v1/studies").json()["studies"] == before  # none kept

    url = "data:image/png;base64," + base64.b64encode(photo).decode()
    chat = httpx.post(f"{real_server.url}/v1/chat/completions", timeout=60, json={
        "max_tokens": 6, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe this X-ray."},
            {"type": "image_url", "image_url": {"url": url}}]}]})  # fmt: skip
    assert chat.status_code == 422 and chat.json()["error"]["code"] == "image_refused"
    assert grey.split(": ", 1)[-1] in chat.json()["error"]["message"]

    (tmp_path / "camera.png").write_bytes(photo)
    res = CliRunner().invoke(app, ["classify", str(tmp_path / "camera.png"),
                                   "--encoder", TINY_ENCODER])  # fmt: skip
    assert res.exit_code == 3 and res.stdout == "" and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert "does not look like a chest radiograph" in res.stderr


def test_unbroken_model_output_stays_within_the_viewport(
    real_server: ServerProcess, nih_images: list[Path]
) -> None:
    made = httpx.post(f"{real_server.url}/v1/studies", timeout=60, files=[
        ("files", ("a.png", nih_images[3].read_bytes(), "image/png"))]).json()  # fmt: skip
    assert _wait(real_server.url, made["job"]["id"])["status"] == "done"
    report = httpx.get(f"{real_server.url}{made['interpretation_url']}").json()["report"]
    assert TOKEN in report["raw_text"]  # the model's answer is the unbroken token
    with open_page(60_000) as (page, errors):
        page.goto(f"{real_server.url}/studies/{made['id']}")
        page.get_by_text(TOKEN[:200]).first.wait_for()
        width, viewport = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth]")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "first-hour-long-output.png"), full_page=True)
        assert width <= viewport, f"{width} px wide in a {viewport} px viewport"
    assert not errors, errors
