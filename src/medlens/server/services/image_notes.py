"""The notes the study page shows under an image, sorted into neutral information and
cautions.

Intake keeps each image's de-identification and decoding warnings with the stored image
(metadata "warnings"). Some of them describe what MedLens itself did to the ORIGINAL
upload before storing it (dropped embedded metadata; marked the stored copy
PatientIdentityRemoved NO because the original did not say its pixels are free of
burned-in text). Shown as an alarm on the image MedLens de-identified, they read as if
the stored image still carried identity: they become one neutral line instead. An
original that declares burned-in text stays a caution.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

# imaging/deid.py's wording, "BurnedInAnnotation is {YES|absent}: ... set to NO."
_BURNED_IN = re.compile(r"^BurnedInAnnotation is (\w+): .*PatientIdentityRemoved is set to NO")
_METADATA_DROPPED = "embedded metadata (EXIF/text chunks) dropped"


@dataclass(frozen=True)
class ImageNote:
    level: Literal["info", "warn"]  # info: neutral (what MedLens did); warn: check this
    text: str


def _burned_in_note(state: str) -> ImageNote:
    if state.upper() == "YES":
        return ImageNote(
            "warn",
            "The original states that text is burned into the pixels (BurnedInAnnotation "
            "YES). MedLens removed the header identifiers but cannot remove text from the "
            "pixels: check the image before sharing it.",
        )
    return ImageNote(
        "info",
        "The original was not marked free of burned-in text (BurnedInAnnotation absent); "
        "MedLens removed the header identifiers before storing this copy. Text drawn on "
        "the image itself is not removed.",
    )


def image_notes(metadata: dict[str, Any] | None) -> list[ImageNote]:
    """The stored image's warnings as the page shows them (neutral ones first)."""
    notes = []
    for raw in (metadata or {}).get("warnings") or []:
        text = str(raw)
        burned = _BURNED_IN.match(text)
        if burned:
            notes.append(_burned_in_note(burned.group(1)))
        elif text == _METADATA_DROPPED:
            notes.append(
                ImageNote(
                    "info",
                    "MedLens dropped the file's embedded metadata (EXIF, text "
                    "chunks) before storing it.",
                )
            )
        else:
            notes.append(ImageNote("warn", text))
    return sorted(notes, key=lambda n: n.level != "info")
