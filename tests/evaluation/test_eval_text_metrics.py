"""BLEU-4 / ROUGE-L: hand-computed cases and cross-checks against nltk and rouge-score."""

from __future__ import annotations

import math

import pytest

from medlens.evaluation import text_metrics as tm

HYPS = ["The cat sat on the mat.", "There is a small left pleural effusion."]
REFS = ["The cat is on the mat.", "There is a small left pleural effusion."]


def test_eval_bleu_hand_computed():
    # pair 1: p1 5/6, p2 3/5, p3 1/4, p4 0/3 ; pair 2 (identical, 7 tokens): 7/7, 6/6, 5/5, 4/4
    res = tm.corpus_bleu(HYPS, REFS)
    assert res.precisions == (12 / 13, 9 / 11, 6 / 9, 4 / 7)
    assert res.hyp_len == 13 and res.ref_len == 13 and res.brevity_penalty == 1.0
    assert res.bleu == pytest.approx((12 / 13 * 9 / 11 * 6 / 9 * 4 / 7) ** 0.25, abs=1e-15)
    # single pair without any 4-gram match: BLEU 0 (no smoothing)
    assert tm.corpus_bleu(HYPS[:1], REFS[:1]).bleu == 0.0
    assert tm.corpus_bleu(["a b c d e"], ["a b c d e"]).bleu == pytest.approx(1.0)


def test_eval_bleu_brevity_penalty_hand_computed():
    # hyp 5 tokens, closest ref 10 tokens: BP = exp(1 - 10/5) ; all n-grams of hyp match
    hyp = "one two three four five"
    ref = "one two three four five six seven eight nine ten"
    res = tm.corpus_bleu([hyp], [ref])
    assert res.brevity_penalty == pytest.approx(math.exp(-1.0))
    assert res.bleu == pytest.approx(math.exp(-1.0))
    # multiple references: the closest length (6) is used, shorter on ties
    res = tm.corpus_bleu([hyp], [[ref, "one two three four five six"]])
    assert res.ref_len == 6 and res.brevity_penalty == pytest.approx(math.exp(1 - 6 / 5))
    res = tm.corpus_bleu(["a b c d e f"], [["a b c d e", "a b c d e f g"]])
    assert res.ref_len == 5  # |5-6| == |7-6|: the shorter reference wins


def test_eval_bleu_matches_nltk():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    hyps = [
        "Mild cardiomegaly with small bilateral pleural effusions and no pneumothorax.",
        "No acute cardiopulmonary process. Lungs are clear.",
        "Right lower lobe opacity concerning for pneumonia. Heart size is normal.",
        "Endotracheal tube terminates 3 cm above the carina.",
    ]
    refs = [
        ["Cardiomegaly is mild. There are small bilateral pleural effusions. No pneumothorax."],
        ["Lungs are clear. No acute cardiopulmonary process.", "No acute disease."],
        ["Heart size is normal. Opacity in the right lower lobe, concerning for pneumonia."],
        ["The endotracheal tube terminates 3 cm above the carina. Lungs are clear."],
    ]
    ours = tm.corpus_bleu(hyps, refs)
    theirs = nltk_bleu.corpus_bleu(
        [[tm.tokenize(r) for r in rs] for rs in refs], [tm.tokenize(h) for h in hyps]
    )
    assert ours.bleu == pytest.approx(theirs, abs=1e-12)
    assert ours.bleu > 0


def test_eval_rouge_l_hand_and_package():
    # LCS("the cat sat on the mat", "the cat is on the mat") = 5 -> P = R = F = 5/6
    assert tm.rouge_l_tokens(tm.tokenize(HYPS[0]), tm.tokenize(REFS[0])) == pytest.approx(
        (5 / 6, 5 / 6, 5 / 6)
    )
    assert tm.lcs_length(list("abcbdab"), list("bdcaba")) == 4  # CLRS example
    assert tm.rouge_l(HYPS, REFS) == pytest.approx((5 / 6 + 1.0) / 2)
    assert tm.rouge_l(["x"], ["y"]) == 0.0
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = [
        ("Mild cardiomegaly, small bilateral effusions.", "Cardiomegaly is mild; effusions."),
        ("No pneumothorax. Lungs are clear.", "Lungs clear, no pneumothorax or effusion."),
        ("ET tube 3 cm above the carina.", "The ET tube tip is 3 cm above the carina."),
    ]
    for h, r in pairs:
        ref_f = scorer.score(r, h)["rougeL"].fmeasure
        assert tm.rouge_l([h], [r]) == pytest.approx(ref_f, abs=1e-12)
