"""Optional visual results: a GSPS (text + box on a graphic layer, no pixel copy) or a
Secondary Capture (8-bit RGB with a burned-in "AI draft" banner, JPEG baseline).

MedLens has no finding locations, so neither object claims one: the GSPS box frames the
text, and the SC banner says what the image is. A MONOCHROME1 source (RG1_J2KI) needs
an INVERSE presentation LUT in the GSPS, or a viewer shows the film inverted; Laterality
is set (empty for a chest) because the Series module asks for it (dciodvfy).
"""

from __future__ import annotations

from typing import Any

from medlens.disclaimer import DISCLAIMER
from medlens.integrations import sr as S
from medlens.tasks.interpret.result import Interpretation

BANNER = "AI draft - not verified"


def _summary(interp: Interpretation, limit: int = 3) -> str:
    cut = S.threshold(interp)
    scores = sorted(
        (s for b in interp.finding_scores[:1] for s in b.scores), key=lambda s: -s.probability
    )
    flagged = [f"{s.label} {s.probability:.2f}" for s in scores if s.probability >= cut][:limit]
    return f"{BANNER}: " + ("; ".join(flagged) if flagged else "no finding above threshold")


def gsps(interp: Interpretation, sources: list[Any]) -> Any:
    """Grayscale Softcopy Presentation State over the first source image."""
    import highdicom as hd
    import numpy as np

    S.check_sources(sources)
    src = _reference(sources[0])
    rows, cols = int(src.Rows), int(src.Columns)
    layer = hd.pr.GraphicLayer(layer_name="MEDLENS_AI", order=1, description="AI draft")
    top, left, bottom, right = 10.0, 10.0, min(rows - 1.0, 90.0), cols - 10.0
    text = hd.pr.TextObject(
        text_value=f"{_summary(interp)}. {DISCLAIMER}"[:1024],
        units=hd.pr.AnnotationUnitsValues.PIXEL,
        bounding_box=(left + 5, top + 5, right - 5, bottom - 5),
    )
    box = hd.pr.GraphicObject(
        graphic_type=hd.pr.GraphicTypeValues.POLYLINE,
        graphic_data=np.array(
            [[left, top], [right, top], [right, bottom], [left, bottom], [left, top]]
        ),
        units=hd.pr.AnnotationUnitsValues.PIXEL,
    )
    annotation = hd.pr.GraphicAnnotation(
        referenced_images=[src], graphic_layer=layer, graphic_objects=[box], text_objects=[text]
    )
    extra: dict[str, Any] = {}
    if str(src.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        extra["presentation_lut_transformation"] = hd.PresentationLUTTransformation(
            presentation_lut_shape="INVERSE"
        )
    study_uid = str(src.StudyInstanceUID)
    ds = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[src],
        series_instance_uid=S.derived_uid(study_uid, interp.study_id, "gsps-series"),
        series_number=S.AI_SERIES_NUMBERS["gsps"],
        sop_instance_uid=S.derived_uid(study_uid, interp.study_id, S.created(interp), "gsps"),
        instance_number=1,
        manufacturer=S.MANUFACTURER,
        manufacturer_model_name="MedLens",
        software_versions=S.MEDLENS_VERSION,
        device_serial_number="unknown",
        content_label="AI_DRAFT",
        content_description=BANNER,
        graphic_annotations=[annotation],
        graphic_layers=[layer],
        **extra,
    )
    ds.SeriesDescription = "AI draft overlay - not verified"
    ds.Laterality = ""
    return ds


def _reference(source: Any) -> Any:
    """The source header with what highdicom reads present: an identity-table header has
    no pixel description, and a GSPS only applies to one-sample (grayscale) images."""
    from copy import deepcopy

    ref = deepcopy(source)
    for key in S.SOURCE_KEYWORDS:
        if key not in ref:
            setattr(ref, key, "")
    if "SamplesPerPixel" not in ref:
        ref.SamplesPerPixel = 1
    return ref


def _rgb_with_banner(pixels: Any, text: str) -> Any:
    """8-bit RGB of the image (min-max window) with a banner burned in at the top."""
    import numpy as np
    from PIL import Image, ImageDraw

    arr = np.asarray(pixels, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3]
    lo, hi = float(arr.min()), float(arr.max())
    grey = ((arr - lo) / (hi - lo or 1.0) * 255.0).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(grey).convert("RGB")
    width = image.width
    band = max(24, image.height // 20)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, width, band], fill=(180, 0, 0))
    draw.text((8, band // 4), text, fill=(255, 255, 255))
    return np.asarray(image)


def secondary_capture(interp: Interpretation, sources: list[Any], pixels: Any) -> Any:
    """Secondary Capture of the first image, as displayed (monochrome1 inverted), JPEG."""
    import highdicom as hd
    import numpy as np
    from pydicom.uid import JPEGBaseline8Bit

    S.check_sources(sources)
    src = sources[0]
    arr = np.asarray(pixels)
    if str(src.get("PhotometricInterpretation", "")) == "MONOCHROME1" and arr.ndim == 2:
        arr = arr.max() - arr  # what a viewer shows: bone white
    rgb = _rgb_with_banner(arr, _summary(interp))
    orientation = [str(v) for v in (src.get("PatientOrientation") or [])]
    if len(orientation) != 2:
        from medlens.errors import InvalidImage

        raise InvalidImage("The source has no PatientOrientation: no SC (use a GSPS instead).")
    ref = S.evidence(sources)[0]
    study_uid = str(src.StudyInstanceUID)
    ds = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref,
        pixel_array=rgb,
        photometric_interpretation="YBR_FULL_422",
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=(orientation[0], orientation[1]),
        series_instance_uid=S.derived_uid(study_uid, interp.study_id, "sc-series"),
        series_number=S.AI_SERIES_NUMBERS["sc"],
        sop_instance_uid=S.derived_uid(study_uid, interp.study_id, S.created(interp), "sc"),
        instance_number=1,
        manufacturer=S.MANUFACTURER,
        transfer_syntax_uid=JPEGBaseline8Bit,
    )
    ds.BurnedInAnnotation = "YES"
    ds.SeriesDescription = "AI draft capture - not verified"
    ds.ImageComments = DISCLAIMER
    ds.Laterality = ""
    return ds
