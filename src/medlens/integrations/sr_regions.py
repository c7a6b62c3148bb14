"""Grounding boxes in the findings SR: one TID 1410 planar-ROI group per `Region`.

TID 1501 (the per-finding image group of sr.py) has no place for an image region: a box
belongs in TID 1410 "Planar ROI Measurements and Qualitative Evaluations", whose Image
Region is an SCOORD referencing the source image. Each region becomes one such group,
coded with the finding it draws (the scored or coded finding its label names, e.g. "left
pneumothorax" -> Pneumothorax; otherwise its own label, a private 99MEDLENS code), so a
reader pairs it with the finding's TID 1501 group by `finding_type`. The box is a closed
5-point POLYLINE (the rectangle's corners): SCOORD has no RECTANGLE graphic type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medlens.tasks.interpret.result import Interpretation, Region


def box_polyline(box: Sequence[float]) -> list[tuple[float, float]]:
    """[x0, y0, x1, y1] -> the closed polyline of its corners as (column, row) pairs.

    Convention (PS3.3 C.18.6.1.1, SCOORD Graphic Data): image pixel coordinates with
    (0.0, 0.0) at the top-left corner of the top-left pixel (its centre is (0.5, 0.5)) and
    (Columns, Rows) at the bottom-right corner of the last pixel. `Region.box` is already in
    that continuous, 0-based edge convention (the un-padding in grounding_parse maps the
    padded square's edges onto the image's edges), so no half-pixel or 1-based shift.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def region_finding(region_label: str, finding_labels: Sequence[str]) -> str | None:
    """The scored finding a region's free-text label names: same CheXpert finding (the
    report labeller), else every word of the finding label present; None if neither."""
    from medlens.tasks.interpret.labeler import label_report

    by_lower = {f.lower(): f for f in finding_labels}
    for chexpert in label_report(region_label):
        if chexpert.lower() in by_lower:
            return by_lower[chexpert.lower()]
    words = set(region_label.lower().replace("-", " ").split())
    for label in sorted(finding_labels, key=len, reverse=True):
        if set(label.lower().split()) <= words:
            return label
    return None


def region_algorithm(interp: Interpretation) -> Any:
    """The model that drew the boxes (the generator), with the prompt it was given."""
    import highdicom as hd

    from medlens import __version__ as version

    prov = interp.provenance
    gen = prov.generator
    params = [f"MedLens {version}", "grounding boxes"]
    if prov.prompt is not None:
        params.append(f"prompt {prov.prompt.name} v{prov.prompt.version}")
    return hd.sr.AlgorithmIdentification(
        name=(gen.model_id if gen else "MedLens")[:64],
        version=(gen.revision if gen else version)[:64] or "unknown",
        parameters=params,
    )


def region_groups(interp: Interpretation, sources: list[Any]) -> list[Any]:
    """One TID 1410 group per region, on the source image the region was drawn on."""
    import highdicom as hd
    import numpy as np

    from medlens.integrations.sr import _codes, derived_uid, finding_code

    if not interp.regions:
        return []
    algo = region_algorithm(interp)
    scored = [s.label for block in interp.finding_scores for s in block.scores]
    groups = []
    for n, region in enumerate(interp.regions):
        src = sources[min(max(region.image_index, 0), len(sources) - 1)]
        # a scored finding first; else a coded one (SNOMED) even when scores were skipped
        finding = region_finding(region.label, scored) or region_finding(
            region.label, list(_codes()["labels"])
        )
        image_region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=np.array(box_polyline(region.box), dtype=float),
            source_image=hd.sr.SourceImageForRegion.from_source_image(src),
        )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=derived_uid(interp.study_id, "region", str(n), _key(region)),
                    identifier=f"region {n + 1}: {region.label}"[:64],
                ),
                referenced_region=image_region,
                finding_type=finding_code(finding or region.label).hd(),
                algorithm_id=algo,
            )
        )
    return groups


def _key(region: Region) -> str:
    return f"{region.image_index}|{region.label}|" + ",".join(f"{v:g}" for v in region.box)
