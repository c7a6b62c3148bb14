"""MedGemma 1.5 box answers: strict-but-forgiving parsing and the padded-square geometry.

The model sees each image padded to a square (black, centred) and answers a JSON list of
`{"box_2d": [y0, x0, y1, x1], "label": "..."}` normalised to 0-1000 over that square
(the paper's variant: 0-1). `parse_boxes` never raises: each item is kept, kept with a
repair noted in its warnings (swapped corners, values clipped into range, 0-1 scale), or
dropped with a reason. `norm_to_pixels` / `pixels_to_norm` map between the normalised
square and the original pixel grid (for DICOM: column, row of the pixel data).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from medlens.models.thinking import strip_thinking

Scale = Literal["0-1000", "0-1", "none"]
NORM = 1000.0
FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_BOX_KEYS = ("box_2d", "box", "bbox", "bounding_box")
_LABEL_KEYS = ("label", "name", "finding")


@dataclass(frozen=True)
class RawBox:
    """One parsed box: [y0, x0, y1, x1] in 0-1000 of the padded square, corners ordered."""

    label: str
    norm: tuple[float, float, float, float]
    warnings: tuple[str, ...] = ()


@dataclass
class ParsedBoxes:
    boxes: list[RawBox] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # one reason per dropped item
    scale: Scale = "none"
    warnings: list[str] = field(default_factory=list)  # about the answer as a whole


def parse_boxes(text: str) -> ParsedBoxes:
    """Boxes from a model answer (thinking stripped, fenced or bare JSON); never raises."""
    out = ParsedBoxes()
    try:
        items = _items(strip_thinking(str(text or "")), out)
        candidates = [c for c in (_candidate(i, n, out) for n, i in enumerate(items, 1)) if c]
        _finish(candidates, out)
    except Exception as exc:  # the contract is "never raise": say what happened instead
        out.boxes.clear()
        out.warnings.append(f"Box answer could not be read ({type(exc).__name__}).")
    return out


def _items(text: str, out: ParsedBoxes) -> list[Any]:
    """The answer's JSON items: the whole list if it parses, else every {...} salvaged."""
    fenced = FENCE.findall(text)
    body = "\n".join(fenced) if fenced else text
    data = loads_lenient(body)
    if data is None:
        start = min((i for i in (body.find("["), body.find("{")) if i >= 0), default=-1)
        data = loads_lenient(body[start:]) if start >= 0 else None
    if isinstance(data, dict):
        inner = next((data[k] for k in ("boxes", "objects", "results") if k in data), None)
        data = inner if isinstance(inner, list) else [data]
    if isinstance(data, list):
        return data
    salvaged = [obj for obj in (loads_lenient(m) for m in _OBJECT.findall(body)) if obj is not None]
    if salvaged:
        out.warnings.append("The box list was not valid JSON; complete objects were salvaged.")
    elif text.strip():
        out.warnings.append("No JSON box list found in the answer.")
    else:
        out.warnings.append("The answer was empty.")
    return salvaged


def loads_lenient(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    for attempt in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:
            return json.loads(attempt)
        except ValueError:
            continue
    if "'" in text and '"' not in text:  # Python-style quotes
        return loads_lenient(text.replace("'", '"'))
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _candidate(item: Any, n: int, out: ParsedBoxes) -> tuple[str, list[float]] | None:
    """(label, four numbers) or None with the drop reason recorded."""
    if not isinstance(item, dict):
        out.dropped.append(f"item {n}: not an object ({type(item).__name__})")
        return None
    box = next((item[k] for k in _BOX_KEYS if k in item), None)
    label = next((item[k] for k in _LABEL_KEYS if isinstance(item.get(k), str)), "")
    label = " ".join(str(label).split())[:200]
    if not label:
        out.dropped.append(f"item {n}: no label")
        return None
    if not isinstance(box, list | tuple) or len(box) != 4:
        out.dropped.append(f"item {n} ({label}): box_2d is not a list of four numbers")
        return None
    numbers = [_number(v) for v in box]
    if any(v is None for v in numbers):
        out.dropped.append(f"item {n} ({label}): box_2d holds a non-number")
        return None
    return label, [float(v) for v in numbers if v is not None]


def _finish(candidates: list[tuple[str, list[float]]], out: ParsedBoxes) -> None:
    """Decide the scale once for the whole list, then order, clip and keep or drop."""
    if not candidates:
        return
    values = [abs(v) for _, nums in candidates for v in nums]
    out.scale = "0-1" if max(values) <= 1.0 else "0-1000"
    if out.scale == "0-1":
        out.warnings.append("Coordinates were normalised to 0-1 (read as 0-1000 / 1000).")
    factor = NORM if out.scale == "0-1" else 1.0
    for label, nums in candidates:
        box = _repair(label, [v * factor for v in nums], out)
        if box is not None:
            out.boxes.append(box)


def _repair(label: str, nums: list[float], out: ParsedBoxes) -> RawBox | None:
    y0, x0, y1, x1 = nums
    notes: list[str] = []
    if y0 > y1 or x0 > x1:
        notes.append("corners were swapped; reordered")
        y0, y1 = min(y0, y1), max(y0, y1)
        x0, x1 = min(x0, x1), max(x0, x1)
    clipped = [min(max(v, 0.0), NORM) for v in (y0, x0, y1, x1)]
    if clipped != [y0, x0, y1, x1]:
        notes.append("values outside 0-1000 were clipped")
    y0, x0, y1, x1 = clipped
    if y1 - y0 <= 0 or x1 - x0 <= 0:
        out.dropped.append(f"{label}: empty box after repair ({nums})")
        return None
    return RawBox(label, (y0, x0, y1, x1), tuple(notes))


# --- geometry: the padded square <-> the original pixel grid -------------------------
def padded_offsets(width: int, height: int) -> tuple[int, int, int]:
    """(side, left, top) of the centred square pad, exactly as imaging.preprocess pads."""
    side = max(width, height)
    return side, (side - width) // 2, (side - height) // 2


def norm_to_pixels(
    norm: tuple[float, float, float, float], width: int, height: int
) -> tuple[float, float, float, float]:
    """[y0, x0, y1, x1] 0-1000 of the padded square -> [x0, y0, x1, y1] original pixels,
    clipped to the image (a box on the padding shrinks to the image's edge)."""
    side, left, top = padded_offsets(width, height)
    y0, x0, y1, x1 = (v / NORM * side for v in norm)
    px = (
        min(max(x0 - left, 0.0), float(width)),
        min(max(y0 - top, 0.0), float(height)),
        min(max(x1 - left, 0.0), float(width)),
        min(max(y1 - top, 0.0), float(height)),
    )
    return tuple(round(v, 2) for v in px)  # type: ignore[return-value]


def pixels_to_norm(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[float, float, float, float]:
    """[x0, y0, x1, y1] original pixels -> [y0, x0, y1, x1] 0-1000 of the padded square."""
    side, left, top = padded_offsets(width, height)
    x0, y0, x1, y1 = box
    return (
        (y0 + top) / side * NORM,
        (x0 + left) / side * NORM,
        (y1 + top) / side * NORM,
        (x1 + left) / side * NORM,
    )
