"""FHIR Observations for located and compared findings (used by fhir.observations).

One Observation per finding that has a box or a change since the prior: `bodySite.text`
says where (the box's label and its pixel rectangle on which image), `interpretation`
says the change (`new`, `worsened`, …; HL7 v3 ObservationInterpretation W/B where one
fits), `valueString` the report sentence or the comparison's evidence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medlens.tasks.interpret.result import Interpretation, Region

V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_V3 = {"worsened": ("W", "Worse"), "improved": ("B", "Better"), "resolved": ("B", "Better")}


def _site(region: Region) -> str:
    x0, y0, x1, y1 = (round(v) for v in region.box)
    return f"{region.label} (image {region.image_index + 1}, pixels x {x0}-{x1}, y {y0}-{y1})"


def _key(text: str) -> str:
    from medlens.tasks.interpret.comparison import canonical_finding

    return canonical_finding(text).lower()


def finding_observations(interp: Interpretation, start: int) -> list[dict[str, Any]]:
    """Observations numbered from `start` (ids obs<start>, …)."""
    regions: dict[str, list[Region]] = {}
    for region in interp.regions:
        regions.setdefault(_key(region.label), []).append(region)
    changes = {_key(c.finding): c for c in (interp.comparison.changes if interp.comparison else [])}
    out: list[dict[str, Any]] = []
    for key in list(dict.fromkeys([*regions, *changes])):
        boxes, change = regions.get(key, []), changes.get(key)
        name = change.finding if change else boxes[0].label
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"obs{start + len(out)}",
            "status": "preliminary",
            "code": {"text": f"{name} (AI finding)"},
        }
        if boxes:
            obs["bodySite"] = {"text": "; ".join(_site(r) for r in boxes)}
        if change is not None:
            concept: dict[str, Any] = {"text": f"{change.change} since the prior study"}
            if change.change in _V3:
                code, display = _V3[change.change]
                concept["coding"] = [
                    {"system": V3_INTERPRETATION, "code": code, "display": display}
                ]
            obs["interpretation"] = [concept]
        text = (boxes[0].source_sentence if boxes else None) or (change.evidence if change else "")
        if text:
            obs["valueString"] = text
        out.append(obs)
    return out
