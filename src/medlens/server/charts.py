"""Finding-score bar charts, laid out here and drawn as inline SVG by the template
(no script, no style attributes: CSP-clean and readable without JavaScript)."""

from __future__ import annotations

from dataclasses import dataclass

from medlens.tasks.interpret.result import Interpretation

ROW_H = 26
LABEL_W = 190
BAR_W = 300


@dataclass(frozen=True)
class Bar:
    label: str
    probability: float
    y: int
    width: float
    level: str  # high | mid | low (CSS class)


@dataclass(frozen=True)
class ScoreChart:
    title: str
    bars: list[Bar]
    height: int
    label_w: int = LABEL_W
    bar_w: int = BAR_W


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
                    level="high" if p >= high else "mid" if p >= mid else "low",
                )
            )
        idx = block.image_index
        name = names.get(idx)
        title = f"Image {idx + 1}" + (f" ({name})" if name else "") if len(blocks) > 1 else ""
        charts.append(ScoreChart(title=title, bars=bars, height=max(len(bars), 1) * ROW_H))
    return charts
