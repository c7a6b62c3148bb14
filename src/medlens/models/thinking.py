"""MedGemma 27B "thinking" output: `<unused94>thought…<unused95>answer`.

Pure functions (no torch) so tasks and remote backends can reuse them. The thought is
never shown as the answer: only what follows `<unused95>` is kept.
"""

from __future__ import annotations

THINK_START = "<unused94>"
THINK_END = "<unused95>"


def strip_thinking(text: str) -> str:
    """The answer part of a (possibly) thinking output.

    An unterminated thought (generation cut off mid-thought) yields "" rather than
    leaking the thought as if it were the answer.
    """
    out: list[str] = []
    rest = text
    while True:
        start = rest.find(THINK_START)
        if start < 0:
            out.append(rest)
            break
        out.append(rest[:start])
        end = rest.find(THINK_END, start + len(THINK_START))
        if end < 0:
            break
        rest = rest[end + len(THINK_END) :]
    answer = "".join(out)
    return answer.lstrip() if THINK_END in text or THINK_START in text else answer


def split_thinking(text: str) -> tuple[str, str]:
    """(thought, answer); thought is "" when there is none."""
    start = text.find(THINK_START)
    if start < 0:
        return "", text
    end = text.find(THINK_END, start)
    thought = text[start + len(THINK_START) : end if end >= 0 else len(text)]
    return thought.strip(), strip_thinking(text)


class ThinkingFilter:
    """Streaming version of strip_thinking: feed pieces, get only answer text back.

    Holds back a tail that could be the start of a marker so markers split across
    pieces are still recognised.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._in_thought = False
        self.thought = ""

    def feed(self, piece: str) -> str:
        self._buf += piece
        out: list[str] = []
        while True:
            marker = THINK_END if self._in_thought else THINK_START
            idx = self._buf.find(marker)
            if idx >= 0:
                if self._in_thought:
                    self.thought += self._buf[:idx]
                else:
                    out.append(self._buf[:idx])
                self._buf = self._buf[idx + len(marker) :]
                self._in_thought = not self._in_thought
                if not self._in_thought:
                    self._buf = self._buf.lstrip()
                continue
            keep = _partial_suffix(self._buf, marker)
            ready, self._buf = (
                self._buf[: len(self._buf) - keep],
                self._buf[len(self._buf) - keep :],
            )
            if self._in_thought:
                self.thought += ready
            else:
                out.append(ready)
            return "".join(out)

    def flush(self) -> str:
        rest, self._buf = self._buf, ""
        if self._in_thought:
            self.thought += rest
            return ""
        return rest


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of marker."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0
