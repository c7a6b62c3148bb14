"""Auto-interpret rules: which arriving DICOM instances are queued for interpretation.

Data-driven from `settings.auto_interpret` (enabled, modalities, body parts). A rule
looks only at the header (Modality, BodyPartExamined, SOP class, pixel data present); the
image gate of the normal intake (`medlens.jobs.intake.prepare`) then checks the pixels.
Every decision carries a reason, so a study that is not interpreted says why (audit log,
listener log), without naming the patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medlens.config import Settings


@dataclass(frozen=True)
class Decision:
    accept: bool
    reason: str  # why (also when accepted: which rule matched)


@dataclass(frozen=True)
class AutoRule:
    enabled: bool
    modalities: frozenset[str]  # empty: any modality
    body_parts: frozenset[str]  # empty: any body part

    @classmethod
    def from_settings(cls, settings: Settings) -> AutoRule:
        rules = settings.auto_interpret
        return cls(
            enabled=rules.enabled,
            modalities=frozenset(m.strip().upper() for m in rules.modalities if m.strip()),
            body_parts=frozenset(b.strip().upper() for b in rules.body_parts if b.strip()),
        )

    def check(self, header: Any, *, need_pixels: bool = True) -> Decision:
        """Decide from header values (keyword → value, e.g. a pydicom Dataset or a dict);
        `need_pixels=False` for a series-level look (a PACS listing, before any pull)."""
        if not self.enabled:
            return Decision(False, "auto-interpretation is off (auto_interpret.enabled)")
        modality = _text(header.get("Modality"))
        if self.modalities and modality not in self.modalities:
            wanted = "/".join(sorted(self.modalities))
            return Decision(False, f"Modality {modality or 'missing'} is not {wanted}")
        body_part = _text(header.get("BodyPartExamined"))
        if self.body_parts and body_part not in self.body_parts:
            wanted = "/".join(sorted(self.body_parts))
            return Decision(False, f"BodyPartExamined {body_part or 'missing'} is not {wanted}")
        if need_pixels and not _has_pixels(header):
            return Decision(False, f"{modality} instance without pixel data")
        return Decision(True, f"Modality {modality}, BodyPartExamined {body_part or 'any'}")


def _text(value: Any) -> str:
    return str(value or "").strip().upper()


def _has_pixels(header: Any) -> bool:
    # A pydicom Dataset read with stop_before_pixels has no PixelData but Rows: judge by
    # Rows/Columns, which every image IOD carries and an SR or a KOS does not.
    return bool(header.get("Rows")) and bool(header.get("Columns"))
