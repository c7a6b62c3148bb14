"""Strict answer extraction from free-text model output.

An answer is accepted only when the output commits to exactly one valid label; anything
else (refusals, no label, two different labels, an unterminated thought) is "unparseable",
which the harness scores as wrong and reports separately. Rules, in priority order:

1. Thinking is removed: MedGemma's `<unused94>…<unused95>` and `<think>…</think>`; only the
   text after the thought counts (an unterminated thought leaves nothing).
2. Tier 1 - answer statements: "answer is C", "Answer: (D)", "correct option is B",
   "I would choose A". If they name one label -> it; several different -> unparseable.
3. Tier 2 - label formatting: the whole output is a label ("C", "(b)", "**C**", "B."), the
   output starts with an option marker ("D) Metformin", "C. ...", "(A) ..."), a bold label
   ("**C**") or a parenthesised label "(B)" anywhere. Same one-label rule.
4. Tier 3 - the output is exactly one option's text (case-insensitive, trailing period ok).

A single letter only counts as a word on its own: letters inside words never match, and
a lower-case letter counts only when it is bracketed, followed by `)`/`.`/`:` or ends the
answer (so "the answer is a benign cyst" is not read as "A").
For yes/no/maybe tasks (PubMedQA) the labels are words; the same tiers apply with
word-boundary matching.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medlens.models.thinking import strip_thinking

_THINK_TAGS = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ANSWER_KEYWORDS = (
    r"(?:final\s+answer|correct\s+answer|best\s+answer|the\s+answer|answer"
    r"|correct\s+(?:option|choice|response)|best\s+(?:option|choice)"
    r"|(?:i\s+(?:would\s+)?)?(?:choose|select|pick))"
)
# between keyword and label: "is", ":", "would be", "-", "=", "is option", "is therefore"
_GLUE = (
    r"(?:\s*(?:is|would\s+be|should\s+be|will\s+be|=|:|-|—)?\s*(?:therefore|thus|clearly|likely|probably)?"
    r"\s*(?:option|choice|letter)?\s*[:\-]?\s*)"
)


@dataclass(frozen=True)
class Extraction:
    label: str | None  # None = unparseable
    reason: str  # "answer-statement", "format", "option-text", "none", "multiple", "thinking"

    @property
    def parseable(self) -> bool:
        return self.label is not None


def _clean(raw: str) -> str | None:
    text = _THINK_TAGS.sub(" ", raw)
    if re.search(r"<think>", text, re.IGNORECASE):
        return None  # thought never closed: the model did not answer
    text = strip_thinking(text)
    if "<unused94>" in raw and "<unused95>" not in raw:
        return None
    return text.replace("\u200b", "").strip()


def _letter_token(letters: str) -> str:
    # An upper-case letter standing alone, or a bracketed / punctuated lower-case one.
    up = f"[{letters}]"
    low = f"[{letters.lower()}]"
    return (
        rf"(?:[\(\[]\s*(?P<b>{up}|{low})\s*[\)\]]"  # (B) [b]
        rf"|\*\*\s*(?P<s>{up}|{low})\s*[\.\):]?\s*\*\*"  # **C** **c.**
        rf"|(?<![\w'’-])(?P<u>{up})(?![\w'’-])"  # C  (not inside a word, not "A-1")
        rf"|(?<![\w'’-])(?P<l>{low})(?=\s*[\)\.:](?!\w)|\s*$))"  # c) c. c  at end
    )


def _token_value(m: re.Match[str]) -> str:
    for g in ("b", "s", "u", "l"):
        v = m.groupdict().get(g)
        if v:
            return v.upper()
    raise AssertionError("unreachable")


def _decide(found: Sequence[str], reason: str) -> Extraction | None:
    distinct = set(found)
    if len(distinct) == 1:
        return Extraction(found[0], reason)
    if len(distinct) > 1:
        return Extraction(None, "multiple")
    return None


def extract_letter(raw: str, options: Mapping[str, str] | Sequence[str]) -> Extraction:
    """The option letter a free-text answer commits to (labels are single letters)."""
    labels = list(options.keys()) if isinstance(options, Mapping) else list(options)
    letters = "".join(sorted(set(lbl.upper() for lbl in labels)))
    text = _clean(raw)
    if text is None:
        return Extraction(None, "thinking")
    if not text:
        return Extraction(None, "none")
    body = text.replace("__", "")
    tok = _letter_token(letters)

    # Only the keyword part is case-insensitive: the label token keeps its own case rules
    # so "the answer is a benign cyst" is not read as "A".
    flat = body.replace("**", "")
    tier1: list[str] = []
    for m in re.finditer(rf"(?i:\b{_ANSWER_KEYWORDS}{_GLUE}){tok}", flat):
        tier1.append(_token_value(m))
        # "the answer is A or B": a hedge between labels is not a commitment.
        alt = re.match(rf"\s*(?i:,|/|&|\bor\b|\band\b)\s*{tok}", flat[m.end() :])
        if alt:
            tier1.append(_token_value(alt))
    got = _decide(tier1, "answer-statement")
    if got:
        return got

    tier2: list[str] = []
    whole = re.fullmatch(
        rf"\s*(?:\*\*)?\s*[\(\[]?\s*([{letters}{letters.lower()}])\s*[\)\]]?\s*[\.:]?\s*(?:\*\*)?\s*",
        body,
    )
    if whole:
        return Extraction(whole.group(1).upper(), "format")
    lead = re.match(rf"\s*(?:\*\*)?\s*[\(\[]?([{letters}])(?:[\)\]\.:]|\*\*)(?:\s|$)", body)
    if lead:
        tier2.append(lead.group(1))
    for m in re.finditer(
        rf"[\(\[]\s*([{letters}])\s*[\)\]]|\*\*\s*([{letters}])\s*[\.\):]?\s*\*\*", body
    ):
        tier2.append(m.group(1) or m.group(2))
    got = _decide(tier2, "format")
    if got:
        return got

    if isinstance(options, Mapping):
        norm = _norm(body)
        hits = [lbl.upper() for lbl, txt in options.items() if txt and _norm(str(txt)) == norm]
        got = _decide(hits, "option-text")
        if got:
            return got
    return Extraction(None, "none")


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("*", "")).strip().rstrip(".").strip().lower()


def extract_word(raw: str, labels: Sequence[str]) -> Extraction:
    """The label word (e.g. yes / no / maybe) a free-text answer commits to."""
    text = _clean(raw)
    if text is None:
        return Extraction(None, "thinking")
    body = text.replace("*", "").replace("__", "")
    if not body:
        return Extraction(None, "none")
    alts = "|".join(re.escape(w) for w in sorted(labels, key=len, reverse=True))
    word = rf"(?<![\w-])({alts})(?![\w-])"
    tier1: list[str] = []
    for m in re.finditer(rf"\b{_ANSWER_KEYWORDS}{_GLUE}{word}", body, re.IGNORECASE):
        tier1.append(m.group(1).lower())
        alt = re.match(rf"\s*(?:,|/|&|\bor\b|\band\b)\s*{word}", body[m.end() :], re.IGNORECASE)
        if alt:
            tier1.append(alt.group(1).lower())
    got = _decide(tier1, "answer-statement")
    if got:
        return got
    lead = re.match(rf"\s*[\(\[\"']?{word}[\)\]\"']?(?:[\s\.,:;!]|$)", body, re.IGNORECASE)
    if lead:
        return Extraction(lead.group(1).lower(), "format")
    return Extraction(None, "none")


def extract(raw: str, options: Mapping[str, str]) -> Extraction:
    """Dispatch on the label kind: single letters -> `extract_letter`, words -> `extract_word`."""
    labels = list(options)
    if all(len(lbl) == 1 for lbl in labels):
        return extract_letter(raw, options)
    return extract_word(raw, labels)
