"""Incremental text emission with stop strings (pure Python, shared by backends)."""

from __future__ import annotations

from collections.abc import Callable, Sequence


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
        cut = min((i for i in (full_text.find(s, start) for s in self.stops) if i >= 0), default=-1)
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
        piece = self._text[self._emitted :]
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


class IncrementalDetokenizer:
    """Stable text for a growing list of token ids (the vLLM / TGI offsets scheme).

    Text is extended only once the new tokens decode to complete characters, decoding
    them together with the previous chunk so tokenizer context (leading spaces, byte
    fallback groups) matches a one-shot decode of the whole output.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0
        self.text = ""

    def add(self, token: int) -> str:
        self.ids.append(token)
        self._advance(final=False)
        return self.text

    def finish(self) -> str:
        self._advance(final=True)
        return self.text

    def _advance(self, *, final: bool) -> None:
        if self._read == len(self.ids):
            return
        prefix_text = self._decode(self.ids[self._prefix : self._read])
        new_text = self._decode(self.ids[self._prefix :])
        if final or (len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd")):
            self.text += new_text[len(prefix_text) :]
            self._prefix, self._read = self._read, len(self.ids)
