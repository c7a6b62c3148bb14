"""The review flow in Debian's chromium (Playwright), logged in as a real radiologist:
worklist order → edit → save → diff → sign → addendum → worklist again, with
screenshots in test-artifacts/review-*.png."""

from __future__ import annotations

import pytest

from medlens.config import Settings
from medlens.disclaimer import DISCLAIMER

from .review_helpers import PASSWORD, make_study, make_user
from .test_server_browser import ARTIFACTS, open_page

pytestmark = pytest.mark.browser


@pytest.fixture
def seeded(tmp_path, nih_images):
    """A data dir with users and four studies (one already signed), before the server."""
    from medlens.store import open_store

    data_dir = tmp_path / "data"
    store = open_store(Settings(data_dir=data_dir))
    try:
        make_user(store, "Dr Rad", "radiologist", ("chest",))
        clin = make_user(store, "Dr Clin", "clinician", ("chest",))
        images = [p.read_bytes() for p in nih_images[:4]]
        names = ("routine", "urgent", "priority", "signed")
        levels = ("routine", "urgent", "priority", "urgent")  # signed: urgent but done
        ids = {name: make_study(store, data, clin, "chest", level)
               for name, level, data in zip(names, levels, images, strict=True)}
        store.add_report_version(ids["signed"], {"findings": "ok", "impression": "ok"},
                                 author_id=None, author_name="Dr Earlier")
        store.sign_report(ids["signed"], signer_id=None, signer_name="Dr Earlier")
    finally:
        store.close()
    return data_dir, ids


@pytest.fixture
def browser_page():
    with open_page(30_000, accept_dialogs=True) as opened:
        yield opened


def _worklist(page, url: str) -> list[str]:
    page.goto(f"{url}/worklist")
    return page.locator("[data-testid=worklist] tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.study)")


def test_review_flow_in_the_page(seeded, browser_page, spawn_server):
    data_dir, ids = seeded
    page, errors = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    server = spawn_server(data_dir)
    try:
        page.goto(f"{server.url}/login")
        login = page.get_by_test_id("password-login")
        login.locator("input[name=name]").fill("Dr Rad")
        login.locator("input[name=password]").fill(PASSWORD)
        login.locator("button[type=submit]").click()
        page.wait_for_url(f"{server.url}/")

        assert _worklist(page, server.url) == [ids["urgent"], ids["priority"], ids["routine"]]
        page.screenshot(path=str(ARTIFACTS / "review-worklist.png"), full_page=True)

        page.click(f"tr[data-study='{ids['urgent']}'] a")
        page.wait_for_url(f"**/studies/{ids['urgent']}")
        panel = page.get_by_test_id("review")
        assert "Small right pleural effusion." in page.get_by_test_id("review-ai").inner_text()
        page.fill("#review-form textarea[name=findings]", "No pleural effusion. Heart normal.")
        page.fill("#review-form textarea[name=impression]", "Normal chest radiograph.")
        page.get_by_label("Disagree: Pleural Effusion").check()
        page.get_by_label("Comment: Pleural Effusion").fill("costophrenic angles sharp")
        page.click("#review-save")
        page.wait_for_function("() => document.querySelector('#review').dataset.status"
                               " === 'in_review'")
        diff = page.get_by_test_id("review-diff")
        assert diff.locator("ins").count() >= 1 and diff.locator("del").count() >= 1
        inserted = " ".join(diff.locator("ins").all_inner_texts())
        assert "Normal chest radiograph." in inserted
        assert "Right pleural effusion." in " ".join(diff.locator("del").all_inner_texts())
        assert page.get_by_label("Disagree: Pleural Effusion").is_checked()
        page.screenshot(path=str(ARTIFACTS / "review-saved-diff.png"), full_page=True)

        page.click("#review-sign")
        page.wait_for_function("() => document.querySelector('#review').dataset.status"
                               " === 'signed'")
        assert "Signed by Dr Rad" in page.get_by_test_id("signature").inner_text()
        assert page.get_by_test_id("signed-impression").inner_text() == \
            "Normal chest radiograph."
        assert page.locator("#review-form").count() == 0  # frozen: no editor any more
        page.screenshot(path=str(ARTIFACTS / "review-signed.png"), full_page=True)

        page.fill("#addendum-form textarea[name=text]", "Follow-up film in 6 weeks advised.")
        page.click("#addendum-form button")
        page.wait_for_function("() => document.querySelector('#review').dataset.status"
                               " === 'amended'")
        assert "Follow-up film in 6 weeks" in page.get_by_test_id("addenda").inner_text()
        assert panel.get_by_test_id("review-diff").is_visible()
        assert DISCLAIMER in page.get_by_test_id("disclaimer").inner_text()
        page.screenshot(path=str(ARTIFACTS / "review-addendum.png"), full_page=True)

        assert _worklist(page, server.url) == [ids["priority"], ids["routine"]]
        page.screenshot(path=str(ARTIFACTS / "review-worklist-after.png"), full_page=True)
        print(f"screenshots: {ARTIFACTS}/review-*.png")
    finally:
        server.stop()
    assert not [e for e in errors if "Content Security Policy" in e], errors
