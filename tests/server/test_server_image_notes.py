"""An image MedLens de-identified itself shows no "PatientIdentityRemoved is set to NO"
alarm (issue 23 point 7): what MedLens did to the original becomes one neutral line."""

from __future__ import annotations

import re

from medlens.server.services.image_notes import image_notes

from .dicom_helpers import chest_dicom

BURNED_ABSENT = (
    "BurnedInAnnotation is absent: pixels may carry identifying text; "
    "PatientIdentityRemoved is set to NO."
)


def test_own_deidentification_is_neutral_information_not_a_warning():
    notes = image_notes(
        {"warnings": [BURNED_ABSENT, "embedded metadata (EXIF/text chunks) dropped"]}
    )
    assert [n.level for n in notes] == ["info", "info"]
    assert "MedLens removed the header identifiers" in notes[0].text
    assert not any("PatientIdentityRemoved" in n.text for n in notes)


def test_declared_burned_in_text_and_other_warnings_stay_cautions():
    yes = BURNED_ABSENT.replace("absent", "YES")
    notes = image_notes({"warnings": ["pixel values clipped", yes]})
    assert [n.level for n in notes] == ["warn", "warn"]
    assert notes[0].text == "pixel values clipped"
    assert "burned into the pixels" in notes[1].text
    assert image_notes({}) == [] and image_notes(None) == []


def test_study_page_shows_an_info_line_for_an_image_medlens_deidentified(client_factory, upload):
    with client_factory() as client:
        r = upload(client, ("study.dcm", chest_dicom(burned_in=None)))
        assert r.status_code == 201, r.text
        study = r.json()
        # The stored record keeps the de-identifier's own words (the API shows them as-is).
        assert BURNED_ABSENT in study["images"][0]["metadata"]["warnings"]
        html = client.get(f"/studies/{study['id']}").text
        info = re.findall(r'data-testid="image-info">([^<]*)<', html)
        assert len(info) == 1 and "MedLens removed the header identifiers" in info[0]
        assert "PatientIdentityRemoved is set to NO" not in html
        assert 'data-testid="image-warning"' not in html
