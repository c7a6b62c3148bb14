"""Finding-score bar charts, laid out here and drawn as inline SVG by the template
(no script, no style attributes: CSP-clean and readable without JavaScript).

Bars are coloured by meaning: an abnormal finding by how likely it is (high / mid / low),
a label that names the normal class ("No Finding", "Normal skin", "No DR"...) always
green, since a high score there is reassuring, never an alarm."""

from __future__ import annotations

import re
from dataclasses import dataclass

from medlens.tasks.interpret.result import Interpretation

ROW_H = 26
LABEL_W = 190
BAR_W = 300
# The normal classes of the label sets (tasks/classify/labelsets): "No Finding" (cxr),
# "Normal skin", "Normal mucosa", "No DR" (fundus), and plain "normal" in custom sets.
_NORMAL = re.compile(r"^(no finding|no dr|no abnormality|normal\b.*|.*\bnormal)$", re.I)


def is_normal_label(label: str) -> bool:
    """Whether `label` names the normal (no-abnormality) class, e.g. "No Finding"."""
    return bool(_NORMAL.match(label.strip()))


@dataclass(frozen=True)
class Bar:
    label: str
    probability: float
    y: int
    width: float
    level: str  # high | mid | low by likelihood; normal for a normal-finding label (CSS class)


@dataclass(frozen=True)
class ScoreChart:
    title: str
    bars: list[Bar]
    height: int
    label_w: int = LABEL_W
    bar_w: int = BAR_W


def _level(label: str, p: float, high: float, mid: float) -> str:
    if is_normal_label(label):
        return "normal"
    return "high" if p >= high else "mid" if p >= mid else "low"


def score_charts(interp: Interpretation, high: float = 0.5, mid: float = 0.2) -> list[ScoreChart]:
    """One chart per scored image, bars sorted from the most to the least likely."""
    charts = []
    names = {i.image_index: i.source_name for i in interp.provenance.inputs}
    blocks = interp.finding_scores
    for block in blocks:
        scores = sorted(block.scores, key=lambda s: -s.probability)
        bars = []
        for row, score in enumerate(scores):
            p = score.probability
            bars.append(
                Bar(
                    label=score.label,
                    probability=p,
                    y=row * ROW_H,
                    width=round(max(p, 0.0) * BAR_W, 1),
                    level=_level(score.label, p, high, mid),
                )
            )
        idx = block.image_index
        name = names.get(idx)
        title = f"Image {idx + 1}" + (f" ({name})" if name else "") if len(blocks) > 1 else ""
        charts.append(ScoreChart(title=title, bars=bars, height=max(len(bars), 1) * ROW_H))
    return charts
