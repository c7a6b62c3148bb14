"""The upload form in chromium: each file's view selector and a prior with its date reach
the study page as image roles (issue 23: "page upload with a lateral and a prior shows
their roles")."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_server_browser import ARTIFACTS, open_page

pytestmark = pytest.mark.browser


def test_page_upload_with_a_lateral_and_a_prior_shows_their_roles(server, nih_images: list[Path]):
    if len(nih_images) < 3:
        pytest.skip("needs three NIH sample images")
    front, side, prior = (str(p) for p in nih_images[:3])
    with open_page(60_000) as (page, errors):
        page.goto(server.url + "/")
        page.set_input_files("#file-input", [front, side])
        views = page.locator("#file-list [data-testid=file-view]")
        assert views.count() == 2 and views.nth(0).input_value() == "auto"
        views.nth(0).select_option("frontal")
        views.nth(1).select_option("lateral")
        page.check("input[name=prior_mode][value=upload]")
        page.set_input_files("#prior-input", prior)
        page.locator("#prior-list [data-testid=file-view]").select_option("frontal")
        page.fill("input[name=prior_date]", "2026-11-01")
        page.click("#submit-btn")
        page.wait_for_url("**/studies/*")
        roles = page.get_by_test_id("image-role").all_inner_texts()
        assert sorted(r.strip() for r in roles) == [
            "Current · frontal",
            "Current · lateral",
            "Prior · frontal · 2026-11-01",
        ]
        assert page.get_by_test_id("prior-date").inner_text() == "2026-11-01"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "image-roles.png"), full_page=True)
    assert not errors, errors
