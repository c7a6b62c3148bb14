"""The page in Debian's chromium (Playwright): upload → progress → report → follow-up →
delete, with a screenshot of the result page in test-artifacts/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from medlens.disclaimer import DEMO_BANNER, DISCLAIMER

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _chromium() -> str:
    path = os.environ.get("MEDLENS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        if os.environ.get("MEDLENS_CI") == "1":
            pytest.fail("chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return path


@contextmanager
def open_page(timeout_ms: int, *, accept_dialogs: bool = False) -> Iterator[tuple[Any, list[str]]]:
    """A chromium page (1360 × 1000) and the console/page errors it collects."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 1000})
        pg = context.new_page()
        errors: list[str] = []
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(str(e)))
        if accept_dialogs:
            pg.on("dialog", lambda d: d.accept())
        pg.set_default_timeout(timeout_ms)
        try:
            yield pg, errors
        finally:
            context.close()
            browser.close()


@pytest.fixture
def page(server):
    with open_page(120_000) as (pg, errors):
        pg.console_errors = errors  # type: ignore[attr-defined]
        yield pg


def test_upload_watch_report_followup_delete(page, server, nih_images, shared_data):
    ARTIFACTS.mkdir(exist_ok=True)
    image = nih_images[3]
    page.goto(server.url + "/")
    assert page.get_by_test_id("demo-banner").inner_text() == DEMO_BANNER
    assert DISCLAIMER in page.get_by_test_id("disclaimer").inner_text()

    # A refusal first: a ZIP renamed .png gets a friendly message, nothing is stored.
    fake = server.data_dir / "notes.png"
    fake.write_bytes(b"PK\x03\x04" + b"\0" * 200)
    page.set_input_files("#file-input", str(fake))
    page.click("#submit-btn")
    error = page.locator("#upload-error")
    error.wait_for(state="visible")
    assert "not a PNG, JPEG or DICOM" in error.inner_text()
    page.click("#file-list button")  # remove it

    page.set_input_files("#file-input", str(image))
    page.fill("textarea[name=indication]", "Cough and fever for 3 days")
    page.fill("input[name=age]", "58")
    page.select_option("select[name=sex]", "female")
    page.click("#submit-btn")
    page.wait_for_url("**/studies/*")
    study_id = page.url.rsplit("/", 1)[-1]

    # Either we catch it running (progress bar + stream) or it is already done.
    report = page.get_by_test_id("report").or_(page.get_by_test_id("refused"))
    progress = page.get_by_test_id("progress")
    if progress.count():
        progress.wait_for(state="visible")
    report.wait_for(state="visible")
    assert page.get_by_test_id("urgency").is_visible()
    assert page.get_by_test_id("scores").locator("svg rect.fill").count() >= 3
    assert page.get_by_test_id("test-model-label").is_visible()
    assert DISCLAIMER in page.get_by_test_id("disclaimer").inner_text()
    assert page.get_by_test_id("study-image").evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=str(ARTIFACTS / "result-page-viewport.png"))
    page.get_by_test_id("provenance").locator("summary").click()
    page.screenshot(path=str(ARTIFACTS / "result-page.png"), full_page=True)

    if page.get_by_test_id("refused").count() == 0:
        page.fill("#followup-form input[name=question]", "Is there a pleural effusion?")
        page.click("#followup-form button")
        answer = page.locator(".msg-assistant p").last
        page.wait_for_function(
            "() => { const p = document.querySelector('.msg-assistant:last-child p');"
            " return p && !p.classList.contains('pending') && p.textContent.length > 0; }")
        assert answer.inner_text().strip()
        assert page.locator(".msg-user").last.inner_text().endswith("Is there a pleural effusion?")
        page.screenshot(path=str(ARTIFACTS / "result-page-followup.png"), full_page=True)

    page.on("dialog", lambda d: d.accept())
    page.click(f"[data-delete='{study_id}']")
    page.wait_for_url(server.url + "/")
    assert page.locator(f"tr[data-study='{study_id}']").count() == 0
    page.goto(f"{server.url}/studies/{study_id}")
    assert "Study not found" in page.content()
    _dicom_window_level(page, server, shared_data)
    assert not [e for e in page.console_errors if "Content Security Policy" in e], \
        page.console_errors


def _dicom_window_level(page, server, shared_data):
    """A DICOM study: the window/level sliders re-render the image from the stored bits."""
    import httpx

    data = (shared_data / "dicom" / "RG1_J2KI.dcm").read_bytes()
    created = httpx.post(f"{server.url}/v1/studies", timeout=60,
                         files=[("files", ("RG1_J2KI.dcm", data, "application/dicom"))])
    assert created.status_code == 201, created.text
    page.goto(f"{server.url}/studies/{created.json()['id']}")
    controls = page.locator(".wl")
    controls.wait_for(state="visible")
    image = page.get_by_test_id("study-image")
    before = image.get_attribute("src")
    page.locator(".wl-width").fill(str(float(page.locator(".wl-width").get_attribute("min")) * 4))
    page.wait_for_function("src => document.querySelector('[data-testid=study-image]').src"
                           " .includes('ww=') && !document.querySelector"
                           "('[data-testid=study-image]').src.endsWith(src)", arg=before)
    page.wait_for_function("() => document.querySelector('[data-testid=study-image]').complete")
    assert image.evaluate("img => img.naturalWidth") > 0
