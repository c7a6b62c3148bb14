"""MedGemma 27B "thinking" output: `<unused94>thought…<unused95>answer`.

Pure functions (no torch) so tasks and remote backends can reuse them. The thought is
never shown as the answer: only what follows `<unused95>` is kept.
"""

from __future__ import annotations

THINK_START = "<unused94>"
THINK_END = "<unused95>"


def strip_thinking(text: str) -> str:
    """The answer part of a (possibly) thinking output.

    Whitespace right after a thought, and whitespace-only text before one, is dropped.
    An unterminated thought (generation cut off mid-thought) yields only what came
    before it, never the thought itself.
    """
    out: list[str] = []
    rest = text
    after_end = False
    while True:
        start = rest.find(THINK_START)
        seg = rest if start < 0 else rest[:start]
        if after_end:
            seg = seg.lstrip()
        out.append(seg)
        if start < 0:
            break
        if not "".join(out).strip():
            out = []
        end = rest.find(THINK_END, start + len(THINK_START))
        if end < 0:
            break
        rest = rest[end + len(THINK_END) :]
        after_end = True
    return "".join(out)


class ThinkingFilter:
    """Streaming version of strip_thinking: feed pieces, get only answer text back.

    Holds back a tail that could be the start of a marker so markers split across
    pieces are still recognised; `thought` collects the hidden text.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._in_thought = False
        self._after_end = False
        self._pending = ""  # leading whitespace, dropped if a thought follows
        self._emitted = False
        self.thought = ""

    def _emit(self, text: str) -> str:
        if self._after_end:
            text = text.lstrip()
            if text:
                self._after_end = False
        if self._emitted:
            return text
        combined = self._pending + text
        if not combined.strip():
            self._pending = combined
            return ""
        self._pending = ""
        self._emitted = True
        return combined

    def feed(self, piece: str) -> str:
        self._buf += piece
        out: list[str] = []
        while True:
            marker = THINK_END if self._in_thought else THINK_START
            idx = self._buf.find(marker)
            if idx >= 0:
                if self._in_thought:
                    self.thought += self._buf[:idx]
                    self._after_end = True
                else:
                    out.append(self._emit(self._buf[:idx]))
                    if not self._emitted:
                        self._pending = ""
                self._buf = self._buf[idx + len(marker) :]
                self._in_thought = not self._in_thought
                continue
            keep = _partial_suffix(self._buf, marker)
            cut = len(self._buf) - keep
            ready, self._buf = self._buf[:cut], self._buf[cut:]
            if self._in_thought:
                self.thought += ready
            else:
                out.append(self._emit(ready))
            return "".join(out)

    def flush(self) -> str:
        rest, self._buf = self._buf, ""
        if self._in_thought:
            self.thought += rest
            return ""
        text = self._emit(rest)
        if not self._emitted:
            text, self._pending = self._pending, ""
        return text


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of marker."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0
