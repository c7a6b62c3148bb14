"""The chest X-ray gate with its encoder half: accept an image, or refuse it with a reason.

`medlens.imaging.gate` decides what needs no model (DICOM tags, pixel statistics). For a
PNG/JPEG that passes, a real encoder (MedSigLIP) then runs the one zero-shot function
(`medlens.tasks.classify.zero_shot`) over the built-in `image-kind` label set: "chest
X-ray" must win with p >= ZERO_SHOT_MIN_PROB. The image goes in as the same `ImagePart`
(same key) the finding scores use, so the encoder's embedding cache serves both and the
image tower runs once per image. A test encoder (random weights) is never used for the
decision: its answer is noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from medlens.imaging.gate import GateCheck, GateDecision
from medlens.imaging.gate import gate_chest_xray as pixel_gate

if TYPE_CHECKING:
    from medlens.imaging.types import IngestedImage
    from medlens.models.protocols import Encoder, ImagePart
    from medlens.models.registry import PreprocessSpec
    from medlens.tasks.encoding import EncoderParts
    from medlens.tasks.interpret.result import GateRecord
    from medlens.tasks.interpret.study import Study, StudyImage

GATE_LABEL_SET = "image-kind"  # its first label is the one accepted
ZERO_SHOT_MIN_PROB = 0.5


def gate_chest_xray(
    img: IngestedImage,
    encoder: Encoder | None = None,
    *,
    part: ImagePart | Callable[[], ImagePart] | None = None,
    spec: PreprocessSpec | None = None,
    pixel: GateDecision | None = None,
) -> GateDecision:
    """The whole gate. `part`: the image as the encoder's scorer sees it, or a function
    making it (called only when the encoder check runs); else it is built with `spec`, else
    the encoder record's spec. `pixel`: the model-free decision when it was already made
    (at intake), so it is not made twice."""
    decision = pixel if pixel is not None else pixel_gate(img)
    if not decision.accepted or img.format == "dicom" or encoder is None:
        return decision
    if getattr(getattr(encoder, "info", None), "is_test", False):
        skipped = GateCheck("zero-shot", True, "skipped: test encoder (random weights)")
        return replace(decision, checks=(*decision.checks, skipped))
    if callable(part):
        part = part()
    if part is None:
        from medlens.tasks.encoding import image_parts

        part = image_parts([img], spec or encoder_spec(encoder))[0]
    check = zero_shot_check(encoder, part)
    checks = (*decision.checks, check)
    if not check.passed:
        return GateDecision(False, check.detail, checks, (), "zero-shot")
    return replace(decision, checks=checks, method="zero-shot")


def zero_shot_check(encoder: Encoder, part: ImagePart) -> GateCheck:
    """Softmax over kinds of image (the `image-kind` label set); chest X-ray must win."""
    from medlens.tasks.classify.zero_shot import load_label_set, zero_shot

    label_set = load_label_set(GATE_LABEL_SET)
    probs = zero_shot(encoder, [part], label_set)[0]
    chest = label_set.label_names[0]
    best = max(label_set.label_names, key=lambda n: probs[n])  # first wins a tie
    if best == chest and probs[chest] >= ZERO_SHOT_MIN_PROB:
        return GateCheck("zero-shot", True, f"chest X-ray (p={probs[chest]:.2f})")
    detail = f"looks like a {best} (p={probs[best]:.2f}; chest X-ray p={probs[chest]:.2f})"
    return GateCheck("zero-shot", False, detail)


def encoder_spec(encoder: Encoder) -> PreprocessSpec:
    """The encoder record's preprocessing (SigLIP's 448 zero-padded default if unknown)."""
    from medlens.models.registry import PreprocessSpec, load_registry

    try:
        record = load_registry().resolve(encoder.info.model_id, kind="encoder")
        if record.preprocess is not None:
            return record.preprocess
    except Exception:  # an id outside the registry (a fake, a remote): the default
        pass
    return PreprocessSpec(size=448, pad_value="zero", antialias=False)


def gate_images(
    study: Study,
    encoder: Encoder | None,
    enabled: bool,
    warnings: list[str],
    parts: EncoderParts | None = None,
) -> tuple[list[GateRecord], list[StudyImage]]:
    """The pipeline's gate stage: per image, accepted or refused with a reason (chest X-ray
    gate for cxr studies), and the images with the view the gate recognised (a PNG has no
    ViewPosition, but the gate may flag it as a lateral view). `parts`: the scorer's
    encoder inputs, so the gate embeds exactly what the scores will."""
    from medlens.tasks.interpret.result import GateRecord

    gated = enabled and study.modality == "cxr"
    records, images = [], []
    for idx, img in enumerate(study.images):
        accepted, reason = True, "gate disabled" if not enabled else "not gated"
        flags: list[str] = []
        if gated:
            decision = gate_chest_xray(
                img.ingested, encoder, part=_part_maker(parts, img), pixel=img.pixel_gate
            )
            accepted, reason, flags = decision.accepted, decision.reason, list(decision.flags)
            if img.view == "unknown" and any("lateral" in f for f in flags):
                img = replace(img, view="lateral")
        images.append(img)
        records.append(
            GateRecord(
                image_index=idx,
                source_name=img.ingested.source_name,
                view=img.view,
                timepoint=img.timepoint,
                accepted=accepted,
                reason=reason,
                flags=flags,
            )
        )
    return records, images


def _part_maker(parts: EncoderParts | None, img: StudyImage) -> Callable[[], ImagePart] | None:
    if parts is None or parts.spec is None:
        return None  # the gate falls back to the encoder record's spec
    return lambda: parts([img.ingested])[0]
