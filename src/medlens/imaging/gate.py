"""Image gate for the chest X-ray interpreter: accept, or refuse with a reason.

A refused image never gets a report. Order of evidence:
1. DICOM tags (Modality CR/DX/DR, BodyPartExamined, ViewPosition) when present;
2. image statistics, always: tiny, blank/near-constant, colour photograph;
3. for PNG/JPEG with a real encoder (MedSigLIP), zero-shot "chest X-ray" vs other kinds.
A test encoder (random weights) is never used for the decision: its answer is noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.errors import ImageRefused

if TYPE_CHECKING:
    from medlens.imaging.types import ImageMetadata, IngestedImage
    from medlens.models.protocols import Encoder

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
# Zero-shot classes: the first is the one accepted.
ZERO_SHOT_CLASSES: dict[str, tuple[str, ...]] = {
    "chest X-ray": ("a chest X-ray", "a frontal chest radiograph", "a chest radiograph"),
    "CT slice": ("a CT scan slice", "an axial CT image"),
    "MRI image": ("an MRI scan", "a magnetic resonance image"),
    "knee radiograph": ("an X-ray of the knee", "a knee radiograph"),
    "hand radiograph": ("an X-ray of the hand", "a hand radiograph"),
    "skull radiograph": ("an X-ray of the skull", "a skull radiograph"),
    "abdominal radiograph": ("an abdominal X-ray", "an X-ray of the abdomen"),
    "mammogram": ("a mammogram",),
    "photograph": ("a photograph", "a photo of an animal", "a photo of a person"),
    "document": ("a scanned document with text", "a screenshot"),
}
ZERO_SHOT_MIN_PROB = 0.5


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
    method: str = "statistics"  # dicom-tags | statistics | zero-shot

    @property
    def warnings(self) -> tuple[str, ...]:
        """Caveats of an accepted image, phrased for a user (e.g. a lateral view)."""
        return tuple(f"Image gate: {f}." for f in self.flags)

    def raise_if_refused(self) -> GateDecision:
        if not self.accepted:
            raise ImageRefused(f"Image refused for chest X-ray interpretation: {self.reason}.")
        return self


def gate_chest_xray(img: IngestedImage, encoder: Encoder | None = None) -> GateDecision:
    checks: list[GateCheck] = []
    flags: list[str] = []
    if img.volume is not None:
        return _refuse("a CT/MR volume, not a radiograph", checks, "dicom-tags")
    method = "statistics"
    meta = img.metadata
    if img.format == "dicom":
        header = gate_metadata(meta)
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
    if img.format != "dicom" and encoder is not None:
        if getattr(getattr(encoder, "info", None), "is_test", False):
            checks.append(GateCheck("zero-shot", True, "skipped: test encoder (random weights)"))
        else:
            zs = zero_shot_check(img, encoder)
            checks.append(zs)
            method = "zero-shot"
            if not zs.passed:
                return _refuse(zs.detail, checks, method)
    reason = "chest radiograph" + (f" ({', '.join(flags)})" if flags else "")
    return GateDecision(True, reason, tuple(checks), tuple(flags), method)


def require_chest_xray(img: IngestedImage, encoder: Encoder | None = None) -> GateDecision:
    """gate_chest_xray, raising ImageRefused when refused."""
    return gate_chest_xray(img, encoder).raise_if_refused()


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


def zero_shot_check(img: IngestedImage, encoder: Encoder) -> GateCheck:
    """MedSigLIP zero-shot: softmax over kinds of image; the chest X-ray class must win."""
    from medlens.imaging.preprocess import preprocess
    from medlens.models.protocols import ImagePart

    spec = _encoder_spec(encoder)
    part = ImagePart(preprocess(img.image, spec), key=f"{img.pixel_sha256}:gate:{spec.size}")
    names = list(ZERO_SHOT_CLASSES)
    texts = [t for n in names for t in ZERO_SHOT_CLASSES[n]]
    emb_t = np.asarray(encoder.embed_texts(texts), dtype=np.float32)
    emb_i = np.asarray(encoder.embed_images([part]), dtype=np.float32)[0]
    logits, start = [], 0
    for n in names:
        k = len(ZERO_SHOT_CLASSES[n])
        mean = emb_t[start : start + k].mean(axis=0)
        mean /= np.linalg.norm(mean) or 1.0
        logits.append(float(encoder.logit_scale) * float(mean @ emb_i) + float(encoder.logit_bias))
        start += k
    z = np.asarray(logits) - max(logits)
    probs = np.exp(z) / np.exp(z).sum()
    best = int(np.argmax(probs))
    if best == 0 and probs[0] >= ZERO_SHOT_MIN_PROB:
        return GateCheck("zero-shot", True, f"chest X-ray (p={probs[0]:.2f})")
    detail = f"looks like a {names[best]} (p={probs[best]:.2f}; chest X-ray p={probs[0]:.2f})"
    return GateCheck("zero-shot", False, detail)


def _encoder_spec(encoder: Encoder) -> Any:
    from medlens.models.registry import PreprocessSpec, load_registry

    try:
        record = load_registry().resolve(encoder.info.model_id, kind="encoder")
        if record.preprocess is not None:
            return record.preprocess
    except Exception:
        pass
    return PreprocessSpec(size=448, pad_value="zero", antialias=False)


def _refuse(reason: str, checks: list[GateCheck], method: str) -> GateDecision:
    return GateDecision(False, reason, tuple(checks), (), method)
