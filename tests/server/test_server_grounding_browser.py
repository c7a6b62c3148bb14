"""Boxes and a prior/current pair in Debian's chromium (Playwright), issue 20.

Two real films of one patient from ../shared/data/cxr/covid_chestxray (patientid 87,
pneumococcal pneumonia, day 0 and day 7; 1024×840, so landscape, not square):
- through the page: upload the day-7 film, "ask for boxes", compare with the day-0 film
  uploaded as a prior, with the scripted test generator (medlens/test-scripted);
- seeded: a current study pointing at a previous study of the user, with known boxes, and
  a study whose model text is one 5,000-character unbroken token.
Checked: one <rect> per region at the expected screen position, toggles, sentence ↔ box
highlighting, both images side by side with one window control re-rendering both, the
change column, and a page that stays within the viewport. Screenshots:
test-artifacts/grounding-*.png.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from medlens.config import Settings
from medlens.disclaimer import DISCLAIMER

from .test_server_browser import ARTIFACTS, open_page

pytestmark = pytest.mark.browser
SCRIPTED = "medlens/test-scripted"
PATIENT = "87"


@pytest.fixture(scope="module")
def covid_pair(shared_data: Path) -> tuple[Path, Path, Path]:
    """(prior, current, later) films of one patient, read from metadata.csv (offset = day)."""
    root = shared_data / "cxr" / "covid_chestxray"
    with open(root / "metadata.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh)
                if r["patientid"] == PATIENT and r["modality"] == "X-ray" and r["offset"]]
    rows.sort(key=lambda r: int(r["offset"]))
    assert len({r["offset"] for r in rows}) >= 3, rows
    return tuple(root / r["image_file"] for r in rows[:3])  # type: ignore[return-value]


@pytest.fixture
def browser_page():
    with open_page(60_000) as opened:
        yield opened


# --- geometry ---------------------------------------------------------------------------------
def _expected_screen_box(page, img_selector: str, box: list[float]) -> list[float]:
    """Where a box in original pixels lands on screen: the image element's rect, scaled
    as object-fit: contain scales (the smaller ratio, centred)."""
    return page.evaluate(
        """([sel, box]) => {
            const img = document.querySelector(sel), r = img.getBoundingClientRect();
            const w = +img.dataset.width, h = +img.dataset.height;
            const s = Math.min(r.width / w, r.height / h);
            const ox = r.left + (r.width - w * s) / 2, oy = r.top + (r.height - h * s) / 2;
            return [ox + box[0] * s, oy + box[1] * s, ox + box[2] * s, oy + box[3] * s];
        }""", [img_selector, box])


def _screen_rects(page, figure_selector: str) -> list[list[float]]:
    return page.evaluate(
        """sel => Array.from(document.querySelectorAll(sel + ' svg.overlay rect')).map(r => {
            const b = r.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; })""",
        figure_selector)


def _assert_boxes_on_image(page, regions: list[dict[str, Any]], figure: str, img: str) -> None:
    rects = page.locator(f"{figure} svg.overlay rect")
    assert rects.count() == len(regions)
    screen = _screen_rects(page, figure)
    for n, (region, got) in enumerate(zip(regions, screen, strict=True)):
        rect = rects.nth(n)
        x0, y0, x1, y1 = region["box"]
        assert float(rect.get_attribute("x")) == pytest.approx(x0, abs=0.01)
        assert float(rect.get_attribute("y")) == pytest.approx(y0, abs=0.01)
        assert float(rect.get_attribute("width")) == pytest.approx(x1 - x0, abs=0.01)
        assert float(rect.get_attribute("height")) == pytest.approx(y1 - y0, abs=0.01)
        want = _expected_screen_box(page, img, region["box"])
        # the stroke (2.5 px, non-scaling) widens the painted box by half of it each side
        assert got == pytest.approx(want, abs=2.5), (region["label"], got, want)


def _assert_within_viewport(page) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 8)
        .map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right)""")
    assert widths[0] <= widths[1], f"{widths[0]} px wide in a {widths[1]} px viewport: {wide}"


# --- the interactive checks (shared by the seeded and the uploaded study) -----------------------
def _check_toggle_and_hover(page) -> None:
    toggles = page.locator("input[data-toggle]")
    assert toggles.count() >= 1
    key = toggles.first.get_attribute("data-toggle")
    region = page.locator(f"svg.overlay .region[data-finding='{key}']").first
    assert region.is_visible()
    toggles.first.uncheck()
    assert not region.is_visible()
    toggles.first.check()
    assert region.is_visible()
    # keyboard: the toggle is focusable and Space flips it
    toggles.first.focus()
    page.keyboard.press("Space")
    assert not region.is_visible()
    page.keyboard.press("Space")
    assert region.is_visible()

    sentence = page.locator(".sentence[data-finding]").first
    skey = sentence.get_attribute("data-finding")
    target = page.locator(f"svg.overlay .region[data-finding='{skey}']").first
    sentence.hover()
    assert "hl" in (target.get_attribute("class") or "")
    page.mouse.move(0, 0)
    assert "hl" not in (target.get_attribute("class") or "")
    target.hover()  # and the other way round
    assert "hl" in (sentence.get_attribute("class") or "")
    page.mouse.move(0, 0)
    target.focus()  # focus works like hover, for the keyboard
    assert "hl" in (sentence.get_attribute("class") or "")
    assert target.get_attribute("aria-label").startswith("Box ")


def _check_pair_and_window(page) -> None:
    prior = page.get_by_test_id("prior-image").first
    current = page.get_by_test_id("study-image").first
    for img in (prior, current):
        page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                               arg=img.element_handle())
    pb, cb = prior.bounding_box(), current.bounding_box()
    assert pb["x"] + pb["width"] <= cb["x"] + 1, "prior is left of current, side by side"
    assert abs(pb["y"] - cb["y"]) < 40
    assert page.get_by_test_id("prior-date").inner_text().strip()
    assert page.get_by_test_id("current-date").inner_text().strip()
    shared = page.get_by_test_id("pair-window")
    shared.wait_for(state="visible")
    before = [prior.get_attribute("src"), current.get_attribute("src")]
    shared.locator(".wl-width").fill("60")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.pair img')].every(i => i.src.includes('ww=60'))")
    page.wait_for_function("() => [...document.querySelectorAll('.pair img')]"
                           ".every(i => i.complete && i.naturalWidth)")
    after = [prior.get_attribute("src"), current.get_attribute("src")]
    assert all(a != b for a, b in zip(after, before, strict=True))
    assert page.locator(".wl .wl-center").count() == 0  # one control, not one per image


# --- seeded studies: known boxes, a previous study of the user, a 5,000-character token ---------
def _seed(data_dir: Path, prior_file: Path, current_file: Path, other: Path) -> dict[str, Any]:
    from medlens.jobs import intake
    from medlens.store import open_store
    from medlens.tasks.interpret.result import (
        Comparison,
        FindingChange,
        InputImage,
        PriorStudy,
        Region,
    )

    from .review_helpers import interpretation

    settings = Settings(data_dir=data_dir)
    store = open_store(settings)
    try:
        def study(path: Path, context: dict[str, Any]) -> Any:
            prep = intake.prepare(path.read_bytes(), 1, settings)
            made, _ = store.create_study([prep.new], context)
            intake.keep_decoded(store.blobs, prep.new.sha256, prep.decoded)
            return made

        prior = study(prior_file, {"indication": "pneumonia", "study_date": "2020-03-01"})
        current = study(current_file, {"indication": "pneumonia, day 7",
                                       "prior_study_id": prior.id, "prior_date": "2020-03-01"})
        regions = [
            {"label": "left pneumothorax", "box": [612.0, 80.5, 903.0, 300.0],
             "sentence": "Small left apical pneumothorax."},
            {"label": "right pleural effusion", "box": [90.0, 500.0, 460.0, 801.0],
             "sentence": "Small right pleural effusion."},
        ]
        interp = interpretation(current.id, findings="Small left apical pneumothorax. "
                                "Small right pleural effusion. No consolidation.")
        interp.provenance.inputs = [InputImage(image_index=0, sha256=current.images[0].sha256,
                                               pixel_sha256="p", format="png")]
        interp.regions = [Region(label=r["label"], box=r["box"], box_norm=[0, 0, 1, 1],
                                 source_sentence=r["sentence"], model=SCRIPTED)
                          for r in regions]
        interp.comparison = Comparison(
            prior=PriorStudy(description="previous study", date="2020-03-01",
                             source_study_id=prior.id),
            sentence="The pneumothorax is new; the effusion is unchanged.",
            changes=[FindingChange(finding="pneumothorax", change="new", evidence="not before"),
                     FindingChange(finding="pleural effusion", change="stable", evidence="same")])
        store.save_interpretation(current.id, "job", interp)

        token = "X" * 5000  # one unbroken token of model text
        long = study(other, {"indication": "I" * 900})
        li = interpretation(long.id, findings=token)
        li.report.impression = token
        li.provenance.inputs = [InputImage(image_index=0, sha256=long.images[0].sha256,
                                           pixel_sha256="p", format="png")]
        li.regions = [Region(label="L" * 300, box=[10, 10, 200, 200], box_norm=[0, 0, 1, 1],
                             source_sentence=token)]
        li.comparison = Comparison(sentence=token, changes=[
            FindingChange(finding="L" * 300, change="worsened", evidence=token)])
        store.save_interpretation(long.id, "job", li)
    finally:
        store.close()
    return {"prior": prior.id, "current": current.id, "long": long.id, "regions": regions}


def test_seeded_boxes_pair_and_long_text(tmp_path, covid_pair, browser_page, spawn_server,
                                         tiny_test_models):
    data_dir = tmp_path / "data"
    seeded = _seed(data_dir, *covid_pair)
    page, errors = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    server = spawn_server(data_dir)
    try:
        page.goto(f"{server.url}/studies/{seeded['current']}")
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        _assert_boxes_on_image(page, seeded["regions"], "[data-testid=pair-current]",
                               "[data-testid=pair-current] img")
        page.screenshot(path=str(ARTIFACTS / "grounding-seeded.png"), full_page=True)
        _check_toggle_and_hover(page)
        _check_pair_and_window(page)
        changes = page.get_by_test_id("findings").locator("[data-testid=change]").all_inner_texts()
        assert any(c.lower().startswith("new") for c in changes)
        assert any(c.lower().startswith("stable") for c in changes)
        assert page.get_by_test_id("prior-date").inner_text() == "2020-03-01"
        page.set_viewport_size({"width": 1360, "height": 1000})
        page.screenshot(path=str(ARTIFACTS / "grounding-seeded-window.png"), full_page=True)

        for width in (1360, 800, 390):  # desktop, tablet, phone
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(f"{server.url}/studies/{seeded['long']}")
            assert page.get_by_test_id("report").inner_text().count("X" * 100) >= 1
            _assert_within_viewport(page)
            assert page.get_by_test_id("findings").bounding_box()["width"] <= width
            page.screenshot(path=str(ARTIFACTS / f"grounding-long-text-{width}.png"))
        assert DISCLAIMER in page.get_by_test_id("disclaimer").inner_text()
    finally:
        server.stop()
    assert not errors, errors


# --- the whole way: the form, the API, the job with the scripted model, the page ----------------
def test_upload_pair_with_boxes_through_the_page(tmp_path, covid_pair, browser_page,
                                                 spawn_server, tiny_test_models):
    import httpx

    prior_file, current_file, _later = covid_pair
    page, errors = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    server = spawn_server(tmp_path / "data", env={"MEDLENS_GENERATOR": SCRIPTED,
                                                  "MEDLENS_MAX_NEW_TOKENS": "1000"})
    try:
        page.goto(server.url + "/")
        page.set_input_files("#file-input", str(current_file))
        page.get_by_test_id("ask-boxes").check()
        page.check("input[name=prior_mode][value=upload]")
        page.set_input_files("#prior-input", str(prior_file))
        page.fill("input[name=prior_date]", "2020-03-01")
        page.fill("textarea[name=prior_report]", "Right lower lobe consolidation.")
        page.screenshot(path=str(ARTIFACTS / "grounding-upload-form.png"), full_page=True)
        page.click("#submit-btn")
        page.wait_for_url("**/studies/*")
        study_id = page.url.rsplit("/", 1)[-1]
        page.get_by_test_id("report").wait_for(state="visible", timeout=180_000)
        page.wait_for_function("() => [...document.images].every(i => i.complete)")

        interp = httpx.get(f"{server.url}/v1/studies/{study_id}/interpretation", timeout=30).json()
        regions = [r for r in interp["regions"] if r["image_index"] == 0]
        assert regions, interp.get("warnings")
        assert page.get_by_test_id("test-model-label").is_visible()
        _assert_boxes_on_image(page, regions, "[data-testid=pair-current]",
                               "[data-testid=pair-current] img")
        page.screenshot(path=str(ARTIFACTS / "grounding-upload-result.png"), full_page=True)
        _check_toggle_and_hover(page)
        _check_pair_and_window(page)
        table = page.get_by_test_id("findings")
        shown = table.locator("[data-testid=change]").all_inner_texts()
        for change in interp["comparison"]["changes"]:  # the scripted changes, each shown
            assert any(s.lower().startswith(change["change"]) for s in shown), (change, shown)
        assert page.get_by_test_id("comparison-sentence").inner_text().endswith(
            interp["comparison"]["sentence"])
        _assert_within_viewport(page)
        page.screenshot(path=str(ARTIFACTS / "grounding-upload-window.png"), full_page=True)
    finally:
        server.stop()
    assert not errors, errors
