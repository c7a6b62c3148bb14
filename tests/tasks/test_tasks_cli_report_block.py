"""The clean "Draft report" block that closes `medlens interpret` (cli/interpret_summary)."""

from __future__ import annotations

import io

from rich.console import Console

from medlens.cli.interpret_summary import print_report_block
from medlens.tasks.interpret.result import Interpretation, Provenance, ReportSections, Urgency


def _interp(report: ReportSections | None, status: str = "complete") -> Interpretation:
    return Interpretation(
        study_id="s", status=status, report=report,
        urgency=Urgency(level="routine") if report else None,
        provenance=Provenance(medlens_version="test", created_at="2026-01-01T00:00:00Z"),
        test_model_label="TEST MODEL: output is not medical",
    )  # fmt: skip


def _render(r: Interpretation, width: int = 80) -> str:
    buf = io.StringIO()
    # the same console settings as `medlens interpret`'s stdout
    print_report_block(Console(file=buf, width=width, highlight=False, soft_wrap=True), r)
    return buf.getvalue()


def test_structured_report_shows_sections_in_order_and_urgency():
    rep = ReportSections(findings="Clear lungs.", impression="No acute disease.",
                         raw_text="x", parse_quality="structured")  # fmt: skip
    text = _render(_interp(rep))
    assert "Draft report - TEST MODEL" in text
    assert text.index("FINDINGS") < text.index("Clear lungs.") < text.index("IMPRESSION")
    assert "Urgency: ROUTINE" in text and "Not a medical device" in text


def test_unstructured_text_is_kept_verbatim_not_read_as_markup():
    rep = ReportSections(raw_text="[bold]effusion[/bold] [red]", parse_quality="unstructured")
    assert "[bold]effusion[/bold] [red]" in _render(_interp(rep))


def test_long_unbroken_output_stays_within_80_columns():
    rep = ReportSections(raw_text="A" * 5000, parse_quality="unstructured")
    lines = _render(_interp(rep)).splitlines()
    assert max(len(line) for line in lines) <= 80
    assert sum(line.count("A") for line in lines) == 5000  # folded, nothing cut


def test_refused_study_says_no_report():
    text = _render(_interp(None, status="refused"))
    assert "No report: the image gate refused every current image." in text
