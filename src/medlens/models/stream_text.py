"""Incremental text emission with stop strings (pure Python, shared by backends)."""

from __future__ import annotations

from collections.abc import Sequence


class StopStringBuffer:
    """Turn successive decodes of the whole output into safe-to-show pieces.

    `feed(full_text)` returns (new_piece, stopped). Text that could be the start of a
    stop string, or a trailing incomplete UTF-8 sequence (U+FFFD), is held back until
    it is resolved; on a stop string the text is cut right before it.
    """

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self.stops = tuple(s for s in stops if s)
        self._emitted = 0
        self._text = ""
        self.stopped = False

    def feed(self, full_text: str) -> tuple[str, bool]:
        self._text = full_text
        if self.stopped:
            return "", True
        start = max(0, self._emitted - max((len(s) for s in self.stops), default=0))
        cut = min((i for i in (full_text.find(s, start) for s in self.stops) if i >= 0),
                  default=-1)
        if cut >= 0:
            piece = full_text[self._emitted : cut] if cut > self._emitted else ""
            self._emitted = max(self._emitted, cut)
            self.stopped = True
            return piece, True
        safe = len(full_text) - self._held_back(full_text)
        if safe <= self._emitted:
            return "", False
        piece = full_text[self._emitted : safe]
        self._emitted = safe
        return piece, False

    def flush(self) -> str:
        """What is left once generation ended without a stop string."""
        if self.stopped:
            return ""
        piece = self._text[self._emitted :].rstrip("\ufffd")
        self._emitted = len(self._text)
        return piece

    @property
    def text(self) -> str:
        """Everything emitted so far."""
        return self._text[: self._emitted]

    def _held_back(self, text: str) -> int:
        hold = 0
        stripped = text.rstrip("\ufffd")
        hold = len(text) - len(stripped)
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(stripped)), 0, -1):
                if stripped.endswith(stop[:n]):
                    hold = max(hold, len(text) - len(stripped) + n)
                    break
        return hold
