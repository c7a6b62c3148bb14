"""Pure text helpers: thinking markers and stop-string streaming."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from medlens.models.stream_text import StopStringBuffer
from medlens.models.thinking import ThinkingFilter, strip_thinking


def test_strip_thinking_keeps_only_the_answer() -> None:
    assert strip_thinking("<unused94>thought: effusion?<unused95>No effusion.") == "No effusion."
    assert strip_thinking("Plain answer.") == "Plain answer."
    assert strip_thinking("<unused94>cut off mid thought") == ""
    assert strip_thinking("  <unused94>t<unused95>\n A <unused94>u<unused95> B") == "A B"
    f = ThinkingFilter()
    assert f.feed("<unused94>look at the left base<unu") == ""
    assert f.feed("sed95>\nClear.") + f.flush() == "Clear."
    assert f.thought == "look at the left base"


_piece = st.sampled_from(["<unused94>", "<unused95>", " ", "\n", "a", "No effusion.", "<unu"])


@given(st.lists(_piece, max_size=12), st.lists(st.integers(1, 7), max_size=20))
def test_thinking_filter_matches_strip_thinking_for_any_split(parts: list[str],
                                                                cuts: list[int]) -> None:
    full = "".join(parts)
    f = ThinkingFilter()
    out, i = [], 0
    for c in cuts:
        out.append(f.feed(full[i : i + c]))
        i += c
    out.append(f.feed(full[i:]))
    out.append(f.flush())
    assert "".join(out) == strip_thinking(full)


def test_stop_buffer_cuts_before_stop_and_holds_partial_prefix() -> None:
    buf = StopStringBuffer(["</report>"])
    assert buf.feed("Lungs clear") == ("Lungs clear", False)
    assert buf.feed("Lungs clear.</re") == (".", False)  # "</re" might start the stop
    assert buf.feed("Lungs clear.</report> extra") == ("", True)
    assert buf.text == "Lungs clear."


def test_stop_buffer_holds_incomplete_utf8_and_flushes() -> None:
    buf = StopStringBuffer()
    assert buf.feed("caf\ufffd") == ("caf", False)
    assert buf.feed("café") == ("é", False)
    assert buf.flush() == ""
