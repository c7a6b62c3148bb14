"""Image gate for the chest X-ray interpreter: accept, or refuse with a reason.

A refused image never gets a report. The evidence here needs no model:
1. DICOM tags (Modality CR/DX/DR, BodyPartExamined, ViewPosition) when present;
2. image statistics, always: tiny, blank/near-constant, colour photograph; and, unless
   radiograph DICOM tags vouch for the image, the calibrated non-radiograph check
   (`imaging.radiograph_stats`: grey levels, edges, texture, symmetry, chest layout).
The encoder half (MedSigLIP zero-shot "chest X-ray" vs other kinds, for PNG/JPEG) is a
task: `medlens.tasks.interpret.gate`, which starts from this decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.errors import ImageRefused

if TYPE_CHECKING:
    from medlens.imaging.types import ImageMetadata, IngestedImage

RADIOGRAPH_MODALITIES = {"CR", "DX", "DR"}
CHEST_PARTS = {"CHEST", "THORAX", "LUNG", "LUNGS", "RIBS", "CHEST_LAT", "CHEST LAT", "THORAX_LAT"}
LATERAL_VIEWS = {"LL", "RL", "LATERAL", "LAT", "RLD", "LLD"}
_MODALITY_NAMES = {
    "CT": "looks like a CT slice/series (Modality CT)",
    "MR": "looks like an MRI image (Modality MR)",
    "NM": "a nuclear medicine image (Modality NM)",
    "PT": "a PET image (Modality PT)",
    "US": "an ultrasound image (Modality US)",
    "MG": "a mammogram (Modality MG)",
    "XA": "an angiography image (Modality XA)",
    "RF": "a fluoroscopy image (Modality RF)",
    "SR": "a structured report, not an image (Modality SR)",
    "ECG": "an ECG, not an image (Modality ECG)",
    "OP": "an ophthalmic photograph (Modality OP)",
    "XC": "an external-camera photograph (Modality XC)",
    "SM": "a slide microscopy image (Modality SM)",
    "IO": "an intra-oral radiograph (Modality IO)",
    "PX": "a panoramic dental radiograph (Modality PX)",
}
MIN_SIDE = 64


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    reason: str
    checks: tuple[GateCheck, ...] = ()
    flags: tuple[str, ...] = ()  # accepted with a caveat, e.g. "lateral view"
    method: str = "statistics"  # dicom-tags | statistics (| zero-shot: tasks.interpret.gate)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Caveats of an accepted image, phrased for a user (e.g. a lateral view)."""
        return tuple(f"Image gate: {f}." for f in self.flags)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, so intake can keep its decision for the job (no second gate run)."""
        return {
            "accepted": self.accepted,
            "reason": self.reason,
            "checks": [[c.name, c.passed, c.detail] for c in self.checks],
            "flags": list(self.flags),
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateDecision:
        checks = tuple(GateCheck(str(n), bool(p), str(d)) for n, p, d in data.get("checks", ()))
        return cls(
            bool(data["accepted"]),
            str(data["reason"]),
            checks,
            tuple(str(f) for f in data.get("flags", ())),
            str(data.get("method", "statistics")),
        )

    def raise_if_refused(self) -> GateDecision:
        if not self.accepted:
            raise ImageRefused(f"Image refused for chest X-ray interpretation: {self.reason}.")
        return self


def gate_chest_xray(img: IngestedImage) -> GateDecision:
    """DICOM tags and pixel statistics: everything the gate can tell without a model."""
    checks: list[GateCheck] = []
    flags: list[str] = []
    if img.volume is not None:
        return _refuse("a CT/MR volume, not a radiograph", checks, "dicom-tags")
    method = "statistics"
    if img.format == "dicom":
        header = gate_metadata(img.metadata)
        checks.extend(header.checks)
        flags.extend(header.flags)
        if not header.accepted:
            return header
        method = header.method
    stats = image_statistics(img.image)
    checks.extend(stats)
    failed = [c for c in stats if not c.passed]
    if failed:
        return _refuse(failed[0].detail, checks, "statistics")
    if method == "statistics":  # no radiograph tags vouch for it: does it look like one?
        look = radiograph_check(img.image)
        checks.append(look)
        if not look.passed:
            return _refuse(look.detail, checks, "statistics")
    reason = "chest radiograph" + (f" ({', '.join(flags)})" if flags else "")
    return GateDecision(True, reason, tuple(checks), tuple(flags), method)


def require_chest_xray(img: IngestedImage, encoder: None = None) -> GateDecision:
    """gate_chest_xray, raising ImageRefused when refused. `encoder=None` is accepted for
    the upload path's callers; the encoder check is `medlens.tasks.interpret.gate`."""
    if encoder is not None:
        raise TypeError("imaging.gate needs no encoder; use medlens.tasks.interpret.gate")
    return gate_chest_xray(img).raise_if_refused()


def gate_metadata(meta: ImageMetadata) -> GateDecision:
    """The DICOM-tag part alone (usable on a header read without decoding pixels)."""
    checks: list[GateCheck] = []
    flags: list[str] = []
    modality = (meta.modality or "").upper()
    if not modality:
        checks.append(GateCheck("modality", True, "no Modality tag; judged from the image"))
        return GateDecision(True, "no modality tag", tuple(checks), (), "statistics")
    if modality not in RADIOGRAPH_MODALITIES:
        what = _MODALITY_NAMES.get(modality, f"not a plain radiograph (Modality {modality})")
        checks.append(GateCheck("modality", False, what))
        return _refuse(what, checks, "dicom-tags")
    checks.append(GateCheck("modality", True, f"Modality {modality}"))
    part = (meta.body_part or "").upper().strip()
    if part:
        if part not in CHEST_PARTS:
            what = f"{part.lower().replace('_', ' ')} radiograph (BodyPartExamined {part})"
            checks.append(GateCheck("body part", False, what))
            return _refuse(what, checks, "dicom-tags")
        checks.append(GateCheck("body part", True, f"BodyPartExamined {part}"))
    else:
        checks.append(GateCheck("body part", True, "no BodyPartExamined; not checked"))
    view = (meta.view_position or "").upper().strip()
    if view in LATERAL_VIEWS:
        flags.append("lateral view")
        checks.append(GateCheck("view", True, f"ViewPosition {view}: lateral view, flagged"))
    elif view in ("PA", "AP", ""):
        checks.append(GateCheck("view", True, f"ViewPosition {view or 'absent'}"))
    else:
        flags.append(f"unusual view {view}")
        checks.append(GateCheck("view", True, f"ViewPosition {view}: unusual, flagged"))
    return GateDecision(True, "radiograph by DICOM tags", tuple(checks), tuple(flags), "dicom-tags")


def image_statistics(image: Any) -> list[GateCheck]:
    """Cheap checks any radiograph passes: size, not blank, not a colour photograph."""
    w, h = image.size
    checks = [
        GateCheck(
            "size",
            min(w, h) >= MIN_SIDE,
            f"{w}x{h}"
            if min(w, h) >= MIN_SIDE
            else f"image too small to read ({w}x{h}, minimum side {MIN_SIDE})",
        )
    ]
    arr = np.asarray(image)
    # A strided sample of ~65k pixels is plenty for these statistics.
    step = max(1, int(np.sqrt(arr.shape[0] * arr.shape[1] / 65_536)))
    sample = arr[::step, ::step].astype(np.int16)
    grey = sample if sample.ndim == 2 else sample.mean(axis=2)
    lo, hi = np.percentile(grey, [1, 99])
    spread = float(hi - lo)
    checks.append(
        GateCheck(
            "content",
            spread >= 16 and float(grey.std()) >= 4.0,
            f"intensity spread {spread:.0f}" if spread >= 16 else "blank or near-constant image",
        )
    )
    if sample.ndim == 3:
        chroma = sample.max(axis=2) - sample.min(axis=2)
        coloured = float((chroma > 40).mean())
        checks.append(
            GateCheck(
                "colour",
                coloured < 0.05,
                f"{coloured:.1%} coloured pixels"
                if coloured < 0.05
                else f"colour photograph ({coloured:.0%} of pixels in colour)",
            )
        )
    return checks


def radiograph_check(image: Any) -> GateCheck:
    """The calibrated non-radiograph check (imaging.radiograph_stats) as a gate check."""
    from medlens.imaging.radiograph_stats import check_radiograph

    result = check_radiograph(image)
    if result.looks_like_radiograph:
        detail = f"radiograph-like statistics (d={result.distance:.2f})"
        return GateCheck("radiograph", True, detail)
    return GateCheck("radiograph", False, result.reason)


def _refuse(reason: str, checks: list[GateCheck], method: str) -> GateDecision:
    return GateDecision(False, reason, tuple(checks), (), method)
