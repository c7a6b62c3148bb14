"""What the generator is given for a study: images as ImageParts, the prompt file, the
image list line and the untrusted data fields. Shared by interpret and conversation, so a
follow-up rebuilds exactly the first request (same images, same cache keys)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medlens.tasks.prompting import PromptTemplate, load_prompt

if TYPE_CHECKING:
    from medlens.models.protocols import ImagePart
    from medlens.models.registry import PreprocessSpec
    from medlens.tasks.interpret.options import InterpretOptions
    from medlens.tasks.interpret.study import Study, StudyImage

_MODALITY_PROMPT = {
    "dermatology": "dermatology",
    "pathology": "pathology",
    "fundus": "fundus",
    "ct": "ct",
}


def generator_parts(images: Sequence[StudyImage], spec: PreprocessSpec) -> list[ImagePart]:
    """Images as the generator sees them; key = decoded-pixel hash + model input size, so a
    backend caches each image's vision encoding across turns. A CT/MR volume (already
    sampled and windowed to RGB at ingest) becomes one part per slice, in order."""
    from PIL import Image

    from medlens.imaging.preprocess import preprocess
    from medlens.models.protocols import ImagePart

    parts = []
    for img in images:
        ing = img.ingested
        if ing.volume is not None and len(ing.volume) > 1:
            for n, frame in enumerate(ing.volume):
                pil = Image.fromarray(frame, "RGB")
                parts.append(
                    ImagePart(preprocess(pil, spec), key=f"{ing.pixel_sha256}:s{n}:{spec.size}")
                )
        else:
            parts.append(
                ImagePart(preprocess(ing.image, spec), key=f"{ing.pixel_sha256}:{spec.size}")
            )
    return parts


def label_set_for(modality: str, options: InterpretOptions) -> str | None:
    """Zero-shot label set for a modality (None: no scores, e.g. CT)."""
    if modality == "cxr":
        return options.label_set
    from medlens.tasks.classify.zero_shot import builtin_label_sets

    return modality if modality in builtin_label_sets() else None


def choose_prompt(
    study: Study, images: Sequence[StudyImage], options: InterpretOptions
) -> PromptTemplate:
    if options.prompt_name:
        return load_prompt(options.prompt_name)
    if study.modality != "cxr":
        return load_prompt(_MODALITY_PROMPT.get(study.modality, "cxr-report"))
    if any(i.timepoint == "prior" for i in images):
        return load_prompt("cxr-comparison")
    if any(i.view == "lateral" for i in images):
        return load_prompt("cxr-lateral")
    return load_prompt("cxr-report")


def image_list_line(images: Sequence[StudyImage], modality: str = "cxr") -> str:
    if len(images) < 2 or modality != "cxr":
        return ""
    names = "; ".join(f"image {n}: {img.label}" for n, img in enumerate(images, 1))
    return f"The images, in the order given: {names}."


def untrusted_fields(study: Study, images: Sequence[StudyImage]) -> dict[str, str | None]:
    ctx = study.context
    fields: dict[str, str | None] = {
        "indication": ctx.indication,
        "age": ctx.age,
        "sex": ctx.sex,
        "clinical notes": ctx.notes,
        "patient record summary": ctx.ehr_summary,
    }
    for n, img in enumerate(images, 1):
        if img.ingested.metadata.description:
            fields[f"image {n} DICOM description"] = img.ingested.metadata.description
        if img.note:
            fields[f"image {n} note"] = img.note
    return fields
