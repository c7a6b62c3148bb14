"""Offline text-overlap metrics for generated reports: corpus BLEU-4 and ROUGE-L.

BLEU (Papineni et al. 2002), corpus level: clipped n-gram precisions p1..p4 summed over
all segments, geometric mean with uniform weights, times the brevity penalty
BP = exp(1 - r/c) when c <= r (c = total hypothesis length, r = sum over segments of the
reference length closest to the hypothesis length, the shorter one on a tie). No
smoothing: any zero precision makes BLEU 0 (as in the original definition, nltk's
`corpus_bleu` and sacrebleu with smoothing "none").

ROUGE-L (Lin 2004): per pair, LCS-based precision P = LCS/|hyp|, recall R = LCS/|ref|,
F = 2PR/(P+R) (beta = 1, as Google's `rouge-score` package reports `fmeasure`); the
corpus value is the mean F over pairs. With several references the best F is kept.

Tokenisation (both metrics): lower-case, then runs of letters/digits as tokens
(punctuation dropped) - the `rouge-score` default tokenizer without stemming.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


@dataclass(frozen=True)
class BleuResult:
    bleu: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    hyp_len: int
    ref_len: int


def corpus_bleu_tokens(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    max_n: int = 4,
) -> BleuResult:
    """BLEU over pre-tokenised segments; references[i] is a list of references for hyp i."""
    if len(hypotheses) != len(references):
        raise ValueError("hypotheses and references differ in number")
    matches = [0] * max_n
    totals = [0] * max_n
    c = r = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        if not refs:
            raise ValueError("every hypothesis needs at least one reference")
        c += len(hyp)
        # closest reference length, the shorter on a tie
        r += min((abs(len(ref) - len(hyp)), len(ref)) for ref in refs)[1]
        for n in range(1, max_n + 1):
            h = _ngrams(hyp, n)
            max_ref: Counter[tuple[str, ...]] = Counter()
            for ref in refs:
                max_ref |= _ngrams(ref, n)
            matches[n - 1] += sum(min(cnt, max_ref[g]) for g, cnt in h.items())
            totals[n - 1] += max(0, len(hyp) - n + 1)
    precisions = tuple(m / t if t else 0.0 for m, t in zip(matches, totals, strict=True))
    if c == 0:
        return BleuResult(0.0, precisions, 0.0, c, r)
    bp = 1.0 if c > r else math.exp(1.0 - r / c)
    if min(precisions) == 0.0:
        return BleuResult(0.0, precisions, bp, c, r)
    log_mean = sum(math.log(p) for p in precisions) / max_n
    return BleuResult(bp * math.exp(log_mean), precisions, bp, c, r)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]]) -> BleuResult:
    """BLEU-4 of texts; each reference may be one string or a list of strings."""
    refs = [[tokenize(r)] if isinstance(r, str) else [tokenize(x) for x in r] for r in references]
    return corpus_bleu_tokens([tokenize(h) for h in hypotheses], refs)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence length (O(len(a) * len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l_tokens(hyp: Sequence[str], ref: Sequence[str]) -> tuple[float, float, float]:
    """(precision, recall, F1) of ROUGE-L for one pair of token lists."""
    lcs = lcs_length(hyp, ref)
    if lcs == 0:
        return 0.0, 0.0, 0.0
    p, r = lcs / len(hyp), lcs / len(ref)
    return p, r, 2 * p * r / (p + r)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """Mean ROUGE-L F1 over pairs (best reference per pair)."""
    if len(hypotheses) != len(references):
        raise ValueError("hypotheses and references differ in number")
    if not hypotheses:
        return math.nan
    total = 0.0
    for hyp, ref in zip(hypotheses, references, strict=True):
        refs = [ref] if isinstance(ref, str) else list(ref)
        h = tokenize(hyp)
        total += max(rouge_l_tokens(h, tokenize(x))[2] for x in refs)
    return total / len(hypotheses)
