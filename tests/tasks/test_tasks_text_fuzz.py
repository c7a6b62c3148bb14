"""Arbitrary model output never breaks the parser, the labeler or the sanitiser."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from medlens.tasks.interpret.labeler import ALL_LABELS, label_report
from medlens.tasks.interpret.report_parser import parse_report
from medlens.tasks.prompting import DATA_CLOSE, DATA_OPEN, sanitize_untrusted

WORDS = st.sampled_from([
    "no", "not", "pneumothorax", "effusion", "left", "right", "may", "Findings:",
    "Impression:", "**", "\n", ".", ",", ";", "cannot be excluded", "large", "tube",
    "<end_of_turn>", DATA_CLOSE, "<unused94>", "opacity", "heart size is normal", "ñ", "所见：",
])
TEXT = st.one_of(st.text(max_size=400), st.lists(WORDS, max_size=60).map(" ".join))


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_parser_and_labeler_accept_anything(text: str) -> None:
    report = parse_report(text)
    assert report.raw_text == text
    for label, m in label_report(text).items():
        assert label in ALL_LABELS and m.status in ("positive", "negative", "uncertain")
        assert m.laterality in (None, "left", "right", "bilateral")


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_sanitised_text_cannot_close_the_data_section(text: str) -> None:
    clean = sanitize_untrusted(text)
    assert DATA_OPEN not in clean and DATA_CLOSE not in clean
    assert "<end_of_turn>" not in clean and "<unused94>" not in clean


def test_labeler_stays_fast_on_an_endless_sentence() -> None:
    """Regression: scope searches were quadratic (19 s for this input); now windowed."""
    import time

    text = "no effusion, pneumothorax and opacity with left tube " * 400  # 21 kB, no period
    t0 = time.perf_counter()
    found = label_report(text)
    assert time.perf_counter() - t0 < 10.0
    assert found["Pneumothorax"].status == "negative"
