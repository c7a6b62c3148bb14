"""What the study page needs to draw boxes and a prior/current pair (issue 20).

Server-side so the page works without script: the SVG overlay is rendered in the
template from `regions` (boxes in original pixels, the SVG's viewBox is the image's
pixel grid, so the browser scales both together); script only adds toggles and
highlighting. Each finding gets one colour class (`c0`…`c7`) shared by its boxes, its
report sentence and its row in the findings table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from medlens.jobs.prior import declared_views
from medlens.server.security import Actor
from medlens.server.services import access
from medlens.server.services.image_notes import ImageNote, image_notes
from medlens.server.services.image_roles import ImageRole, stored_view
from medlens.server.state import ServerState
from medlens.store.base import Study
from medlens.tasks.interpret.result import Interpretation, Region

PALETTE = 8  # colour classes c0..c7 in app.css
CHANGE_ORDER = ("new", "worsened", "stable", "improved", "resolved", "not assessable")


def finding_key(label: str) -> str:
    """A stable, attribute-safe key for a finding label ("Pleural effusion" → pleural-effusion)."""
    key = re.sub(r"[^a-z0-9]+", "-", label.casefold()).strip("-")
    return key or "finding"


@dataclass
class Box:
    """One region as drawn: its rect in the image's own pixels and its label placement."""

    index: int
    key: str
    label: str
    short: str  # the label drawn on the image (the full one is in its title/aria-label)
    colour: int
    x: float
    y: float
    w: float
    h: float
    label_x: float
    label_y: float
    sentence: str | None
    warnings: list[str]


@dataclass
class Frame:
    """One image of the pair/overlay: URLs, pixel grid and boxes."""

    position: int
    url: str
    window_url: str
    width: int
    height: int
    filename: str
    timepoint: str  # "current" | "prior"
    date: str | None = None
    study_id: str | None = None
    boxes: list[Box] = field(default_factory=list)
    role: ImageRole | None = None  # "Current · frontal", "Prior · lateral · 2026-11-01"
    notes: list[ImageNote] = field(default_factory=list)  # de-identification, decoding

    @property
    def font(self) -> float:
        return round(max(12.0, max(self.width, self.height) / 40), 1)


@dataclass
class FindingRow:
    key: str
    label: str
    colour: int | None
    report_status: str | None
    boxes: int
    change: str | None
    evidence: str


@dataclass
class StudyView:
    study_id: str
    frames: list[Frame]
    priors: list[Frame]
    rows: list[FindingRow]
    has_boxes: bool
    comparison: Any  # result.Comparison | None
    current_date: str | None
    prior_date: str | None


def _colours(interp: Interpretation) -> dict[str, int]:
    colours: dict[str, int] = {}
    for region in interp.regions:
        colours.setdefault(finding_key(region.label), len(colours) % PALETTE)
    return colours


def _box(index: int, region: Region, colour: int, frame: Frame) -> Box:
    x0, y0, x1, y1 = (float(v) for v in region.box)
    x0, x1 = sorted((max(0.0, min(x0, frame.width)), max(0.0, min(x1, frame.width))))
    y0, y1 = sorted((max(0.0, min(y0, frame.height)), max(0.0, min(y1, frame.height))))
    font = frame.font
    # The label sits above the box, or just inside its top edge when there is no room.
    label_y = y0 - font * 0.35 if y0 > font * 1.2 else y0 + font * 1.05
    return Box(
        index=index,
        key=finding_key(region.label),
        label=region.label,
        short=region.label if len(region.label) <= 40 else region.label[:39] + "…",
        colour=colour,
        x=round(x0, 2),
        y=round(y0, 2),
        w=round(x1 - x0, 2),
        h=round(y1 - y0, 2),
        label_x=round(x0 + font * 0.2, 2),
        label_y=round(label_y, 2),
        sentence=region.source_sentence,
        warnings=list(region.warnings),
    )


def _frame(
    study_id: str, image: Any, timepoint: str, date: str | None, views: list[str] | None = None
) -> Frame:
    meta = image.metadata or {}
    base = f"/v1/studies/{study_id}/images/{image.position}"
    view, declared = stored_view(image, views or [])
    return Frame(
        position=image.position,
        url=f"{base}.png",
        window_url=f"{base}/window",
        width=int(meta.get("columns") or 0),
        height=int(meta.get("rows") or 0),
        filename=image.filename,
        timepoint=timepoint,
        date=date,
        study_id=study_id,
        role=ImageRole(study_id, image.position, view, timepoint, date, declared),
        notes=image_notes(meta),
    )


def _timepoint(image: Any) -> str:
    return "prior" if (image.metadata or {}).get("timepoint") == "prior" else "current"


def _image_positions(study: Study, interp: Interpretation | None) -> dict[int, int]:
    """Interpretation image_index → study image position (matched by content hash)."""
    by_sha = {img.sha256: img.position for img in study.images}
    mapping: dict[int, int] = {}
    if interp is not None:
        for item in interp.provenance.inputs:
            if item.sha256 in by_sha:
                mapping[item.image_index] = by_sha[item.sha256]
    return mapping


def _words(label: str) -> frozenset[str]:
    return frozenset(finding_key(label).split("-"))


def _rows(interp: Interpretation, colours: dict[str, int]) -> list[FindingRow]:
    """One row per finding: boxes first, then changes and report mentions joined to the row
    whose label contains theirs ("pleural effusion" joins "right pleural effusion")."""
    rows: dict[str, FindingRow] = {}

    def row(label: str) -> FindingRow:
        key, words = finding_key(label), _words(label)
        found = rows.get(key) or next(
            (r for r in rows.values() if words <= _words(r.label) or _words(r.label) <= words),
            None,
        )
        if found is None:
            found = rows[key] = FindingRow(key, label, colours.get(key), None, 0, None, "")
        return found

    for region in interp.regions:
        row(region.label).boxes += 1
    if interp.comparison is not None:
        for change in interp.comparison.changes:
            r = row(change.finding)
            r.change, r.evidence = change.change, change.evidence
    for a in interp.cross_check.assertions if interp.cross_check else []:
        known = finding_key(a.label) in rows or any(
            _words(a.label) <= _words(r.label) for r in rows.values()
        )
        if a.status != "negative" or known:  # negatives only where they say something
            row(a.label).report_status = a.status
    return list(rows.values())


def _prior_frames(
    state: ServerState, actor: Actor, study: Study, interp: Interpretation | None
) -> tuple[list[Frame], str | None]:
    """The prior's images: uploaded with this study, or those of the earlier MedLens study
    it names (only when the viewer may still see that study)."""
    ctx = study.context or {}
    comparison = interp.comparison if interp is not None else None
    date = (comparison.prior.date if comparison else None) or ctx.get("prior_date")
    views = declared_views(study.context)
    frames = [
        _frame(study.id, img, "prior", date, views)
        for img in study.images
        if _timepoint(img) == "prior"
    ]
    source = (comparison.prior.source_study_id if comparison else None) or ctx.get("prior_study_id")
    if not frames and isinstance(source, str) and source != study.id:
        try:
            prior = access.visible_study(state, source, actor)
        except Exception:  # deleted or no longer shared: the page says so, nothing leaks
            return [], date
        date = date or prior.context.get("study_date") or prior.created_at[:10]
        views = declared_views(prior.context)
        frames = [
            _frame(prior.id, img, "prior", date, views)
            for img in prior.images
            if _timepoint(img) == "current"
        ]
    return frames, date


def _separate_labels(frame: Frame) -> None:
    """A label that would overprint an earlier one moves inside its box's bottom edge."""
    placed: list[tuple[float, float, float]] = []  # (x0, x1, y) of labels drawn so far
    for box in frame.boxes:
        width = len(box.short) * frame.font * 0.6
        clash = any(
            abs(box.label_y - y) < frame.font and box.label_x < x1 and x0 < box.label_x + width
            for x0, x1, y in placed
        )
        if clash:
            box.label_y = round(box.y + box.h - frame.font * 0.3, 2)
        placed.append((box.label_x, box.label_x + width, box.label_y))


def build(
    state: ServerState, actor: Actor, study: Study, interp: Interpretation | None
) -> StudyView:
    """The overlay, pair and findings-table model of one study page."""
    current_date = (study.context or {}).get("study_date") or study.created_at[:10]
    views = declared_views(study.context)
    frames = [
        _frame(study.id, img, "current", current_date, views)
        for img in study.images
        if _timepoint(img) == "current"
    ]
    priors, prior_date = _prior_frames(state, actor, study, interp)
    rows: list[FindingRow] = []
    if interp is not None:
        colours = _colours(interp)
        own = [f for f in frames + priors if f.study_id == study.id]
        by_position = {f.position: f for f in own}
        positions = _image_positions(study, interp)
        for n, region in enumerate(interp.regions):
            frame = by_position.get(positions.get(region.image_index, region.image_index))
            if frame is not None and frame.width and frame.height:
                frame.boxes.append(_box(n, region, colours[finding_key(region.label)], frame))
        for frame in own:
            _separate_labels(frame)
        rows = _rows(interp, colours)
    return StudyView(
        study_id=study.id,
        frames=frames,
        priors=priors,
        rows=rows,
        has_boxes=any(f.boxes for f in frames + priors),
        comparison=interp.comparison if interp is not None else None,
        current_date=current_date,
        prior_date=prior_date,
    )


@dataclass
class Segment:
    text: str
    key: str | None = None
    colour: int | None = None
    label: str = ""


def linked_text(text: str, boxes: list[Box]) -> list[Segment]:
    """`text` cut into plain segments and the sentences that name a box (for hover links)."""
    spans: list[tuple[int, int, Box]] = []
    folded = text.casefold()
    for box in boxes:
        sentence = (box.sentence or "").strip()
        if not sentence:
            continue
        start = folded.find(sentence.casefold())
        if start < 0:
            continue
        end = start + len(sentence)
        if all(end <= s or start >= e for s, e, _ in spans):  # first box of a sentence wins
            spans.append((start, end, box))
    spans.sort(key=lambda s: s[0])
    out: list[Segment] = []
    pos = 0
    for start, end, box in spans:
        if start > pos:
            out.append(Segment(text[pos:start]))
        out.append(Segment(text[start:end], box.key, box.colour, box.label))
        pos = end
    if pos < len(text):
        out.append(Segment(text[pos:]))
    return out
