"""The strict answer extractor, checked against a table of real-looking raw outputs."""

from __future__ import annotations

import pytest

from medlens.evaluation.extract import extract, extract_letter, extract_word

OPTS = {"A": "Metformin", "B": "Insulin glargine", "C": "Observation", "D": "Daily aspirin"}

# (raw output, expected letter or None = unparseable)
TABLE: list[tuple[str, str | None]] = [
    ("The answer is C.", "C"),
    ("The answer is C", "C"),
    ("the answer is c", "C"),
    ("(B)", "B"),
    ("(b)", "B"),
    ("B", "B"),
    ("b", "B"),
    ("D.", "D"),
    ("[A]", "A"),
    ("Answer: D) Daily aspirin", "D"),
    ("Answer: D", "D"),
    ("Answer:D", "D"),
    ("ANSWER: (A)", "A"),
    ("**C**", "C"),
    ("The correct answer is **B. Insulin glargine**", "B"),
    ("I think the best option is **C**.", "C"),
    ("D) Daily aspirin", "D"),
    ("C. Observation, because the lesion is benign.", "C"),
    ("(A) Metformin is first-line therapy.", "A"),
    ("Final answer: B", "B"),
    ("The correct option is A.", "A"),
    ("I would choose D.", "D"),
    ("Considering the findings, the answer is therefore C.", "C"),
    ("Metformin", "A"),  # exactly one option's text
    ("daily aspirin.", "D"),
    # letters inside words must NOT match
    ("Because of diabetes, start treatment.", None),
    ("Answer: Daily aspirin is wrong here; consider Beta blockers", None),
    ("A 45-year-old man needs further workup.", None),
    ("the answer is a benign cyst", None),
    ("Vitamin D deficiency", None),
    ("Hepatitis B infection", None),
    ("Answer: B-cell lymphoma", None),
    # multiple different letters
    ("The answer is A or B.", None),
    ("Answer: A. Actually, the answer is C.", None),
    ("(A) or (C)", None),
    ("**A** and **B**", None),
    # the same letter twice is fine
    ("The answer is B. Final answer: (B)", "B"),
    # refusals / nothing
    ("I cannot provide medical advice. Please consult a doctor.", None),
    ("I'm sorry, but I can't answer that question.", None),
    ("", None),
    ("   ", None),
    ("E", None),  # not one of the options
    ("The answer is E.", None),
    # thinking tokens
    ("<unused94>thought\nOption A fits? No, B. Maybe (C).<unused95>The answer is D.", "D"),
    ("<unused94>thought\nThe answer is A", None),  # unterminated thought: no answer given
    ("<think>A or B... (A)</think>\nAnswer: B", "B"),
    ("<think>still thinking about (C)", None),
]


def test_eval_extractor_table_is_large_enough():
    assert len(TABLE) >= 30


@pytest.mark.parametrize(("raw", "expected"), TABLE)
def test_eval_extract_letter(raw, expected):
    got = extract_letter(raw, OPTS)
    assert got.label == expected, (raw, got)
    assert got.parseable == (expected is not None)


def test_eval_extract_reasons():
    assert extract_letter("The answer is A or B.", OPTS).reason == "multiple"
    assert extract_letter("I cannot help", OPTS).reason == "none"
    assert extract_letter("<unused94>thought and never done", OPTS).reason == "thinking"
    assert extract_letter("Answer: C", OPTS).reason == "answer-statement"
    assert extract_letter("(C)", OPTS).reason == "format"
    assert extract_letter("observation", OPTS).reason == "option-text"


def test_eval_extract_five_options():
    opts = {k: k for k in "ABCDE"}
    assert extract_letter("The answer is E.", opts).label == "E"


WORDS = ["yes", "no", "maybe"]
WORD_TABLE: list[tuple[str, str | None]] = [
    ("yes", "yes"),
    ("Yes.", "yes"),
    ("No, the study found no difference.", "no"),
    ("Answer: maybe", "maybe"),
    ("The answer is no.", "no"),
    ("**Yes**", "yes"),
    ("The answer is yes or no.", None),
    ("Nobody knows.", None),  # "no" inside a word
    ("It depends on the population studied.", None),
    ("<unused94>thought yes? no?<unused95>maybe", "maybe"),
]


@pytest.mark.parametrize(("raw", "expected"), WORD_TABLE)
def test_eval_extract_word(raw, expected):
    assert extract_word(raw, WORDS).label == expected


def test_eval_extract_dispatch():
    assert extract("Answer: yes", {"yes": "yes", "no": "no", "maybe": "maybe"}).label == "yes"
    assert extract("Answer: (C)", OPTS).label == "C"
