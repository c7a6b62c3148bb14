"""FHIR R4 bundle → a concise patient context for the report prompt, within a token budget.

What goes in (in this priority order, until the budget is reached): age band and sex
(never name, identifiers, address or birth date), allergies, active problems, active
medications, latest vital signs, latest labs, problems resolved in the last year. Dates
are written relative to the study ("3 mo before study"); facts dated after the study are
left out. The text goes into the prompt's untrusted data section (StudyContext.ehr_summary).

The study date defaults to the bundle's latest dated fact (synthetic bundles have no
study), so the relative dates are still meaningful.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from medlens.tasks.ehr.fhir_facts import BundleFacts, Fact, bundle_facts, load_bundle

DEFAULT_BUDGET = 400  # tokens
TokenCounter = Callable[[str], int]
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """A tokenizer-free upper-ish estimate: words and punctuation, plus long-word pieces.
    Gemma's tokenizer gives fewer tokens than this for English clinical text."""
    return sum(1 + len(t) // 6 for t in _TOKEN_RE.findall(text))


def age_band(birth: date | None, on: date) -> str | None:
    if birth is None or birth > on:
        return None
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if years >= 90:
        return "90+"  # HIPAA Safe Harbor aggregates ages over 89
    if years < 18:
        return "under 18" if years >= 1 else "under 1"
    lo = years // 10 * 10
    return f"{lo}-{lo + 9}"


def relative(when: date | None, study: date) -> str:
    if when is None:
        return "date unknown"
    days = (study - when).days
    if days <= 0:
        return "on study day"
    if days < 14:
        return f"{days} d before study"
    if days < 60:
        return f"{days // 7} wk before study"
    if days < 730:
        return f"{days // 30} mo before study"
    return f"{days // 365} y before study"


@dataclass
class PatientContext:
    age_band: str | None
    sex: str | None
    sections: dict[str, list[str]] = field(default_factory=dict)
    omitted: int = 0
    tokens: int = 0
    budget: int = DEFAULT_BUDGET
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "age_band": self.age_band,
            "sex": self.sex,
            "sections": self.sections,
            "omitted": self.omitted,
            "tokens": self.tokens,
            "budget": self.budget,
            "text": self.text,
        }


def _latest_per_code(facts: list[Fact]) -> list[Fact]:
    best: dict[str, Fact] = {}
    for f in facts:
        key = f.code or f.text
        if key not in best or (f.when or date.min) > (best[key].when or date.min):
            best[key] = f
    return sorted(best.values(), key=lambda f: f.when or date.min, reverse=True)


def _candidates(facts: BundleFacts, study: date) -> list[tuple[str, list[str]]]:
    known = [f for f in facts.facts if f.when is None or f.when <= study]
    by = {
        k: [f for f in known if f.kind == k]
        for k in ("condition", "medication", "allergy", "lab", "vital")
    }
    active = _latest_per_code(
        [f for f in by["condition"] if f.status in ("active", "recurrence", "relapse")]
    )
    resolved = _latest_per_code(
        [
            f
            for f in by["condition"]
            if f.status not in ("active", "recurrence", "relapse")
            and f.when
            and (study - f.when).days <= 365
        ]
    )
    meds = _latest_per_code([f for f in by["medication"] if f.status in ("active", "on-hold")])
    allergies = _latest_per_code([f for f in by["allergy"] if f.status != "resolved"])

    def line(f: Fact, verb: str = "") -> str:
        return f"{tidy(f.text)} ({verb}{relative(f.when, study)})"

    return [
        ("Allergies", [tidy(f.text) for f in allergies]),
        ("Active problems", [line(f, "since ") for f in active]),
        ("Active medications", [line(f, "ordered ") for f in meds]),
        ("Latest vital signs", [line(f) for f in _latest_per_code(by["vital"])]),
        ("Latest labs", [line(f) for f in _latest_per_code(by["lab"])]),
        ("Resolved in the last year", [line(f) for f in resolved]),
    ]


_NAME_TIDY = [
    (re.compile(r"\s*\((?:disorder|finding|situation|procedure)\)"), ""),
    (re.compile(r"\s*\[[^\]]*\]"), ""),  # LOINC qualifiers such as [Mass/volume]
    (re.compile(r" (?:in|of) (?:Blood|Serum or Plasma)| by Automated count"), ""),
    (re.compile(r"Pain severity - 0-10 verbal numeric rating - Reported"), "Pain score (0-10)"),
    (re.compile("[\u200b-\u200d\ufeff]"), ""),
]
_VALUE_TIDY = [(re.compile(r"\s*\{score\}"), ""), (re.compile(r"\{([^}]*)\}"), r"\1")]


def tidy(text: str) -> str:
    """Shorter display text: SNOMED semantic tags and LOINC qualifiers dropped from the
    name; UCUM annotations ({score}) dropped from the value."""
    name, sep, value = text.partition(": ")
    for rx, repl in _NAME_TIDY:
        name = rx.sub(repl, name)
    for rx, repl in _VALUE_TIDY:
        value = rx.sub(repl, value)
    return " ".join(f"{name}{sep}{value}".split())


def render(age: str | None, sex: str | None, sections: dict[str, list[str]], omitted: int) -> str:
    demo = ", ".join(x for x in (f"age {age}" if age else "", sex or "") if x)
    lines = [f"Patient: {demo or 'demographics unknown'}"]
    for title, items in sections.items():
        lines.append(f"{title}: " + ("; ".join(items) if items else "none recorded"))
    if omitted:
        lines.append(f"({omitted} older or lower-priority items omitted for length)")
    return "\n".join(lines)


def patient_context(
    bundle: dict[str, Any] | str | Path,
    *,
    study_date: date | None = None,
    budget_tokens: int = DEFAULT_BUDGET,
    count_tokens: TokenCounter | None = None,
) -> PatientContext:
    """The concise context; its `text` never exceeds `budget_tokens` (by `count_tokens`,
    default approx_tokens; pass generator.count_tokens for the model's own tokenizer)."""
    count = count_tokens or approx_tokens
    data = bundle if isinstance(bundle, dict) else load_bundle(bundle)
    facts = bundle_facts(data)
    study = study_date or facts.latest_date() or date.today()
    age = age_band(facts.birth_date, study)
    sex = facts.sex if facts.sex in ("male", "female", "other", "unknown") else None
    sections: dict[str, list[str]] = {title: [] for title, _ in _candidates(facts, study)}
    omitted = 0
    text = render(age, sex, sections, 0)
    if count(text) > budget_tokens:
        # Even the skeleton does not fit: demographics only, cut to the budget.
        text = _cut(render(age, sex, {}, 0), budget_tokens, count)
        return PatientContext(
            age,
            sex,
            {},
            sum(len(i) for _, i in _candidates(facts, study)),
            count(text),
            budget_tokens,
            text,
        )
    for title, items in _candidates(facts, study):
        for n, item in enumerate(items):
            sections[title].append(item)
            trial = render(age, sex, sections, 1)  # reserve room for the omission note
            if count(trial) > budget_tokens:
                sections[title].pop()
                omitted += len(items) - n
                break
    text = render(age, sex, sections, omitted)
    if count(text) > budget_tokens:  # the omission note itself did not fit
        text = render(age, sex, sections, 0)
    return PatientContext(age, sex, sections, omitted, count(text), budget_tokens, text)


def _cut(text: str, budget: int, count: TokenCounter) -> str:
    words = text.split(" ")
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def estimate_budget(context_length: int, reserve: int = 1500) -> int:
    """A sensible EHR budget for a model: a fraction of what the prompt leaves free."""
    return max(64, min(DEFAULT_BUDGET * 2, math.floor((context_length - reserve) * 0.25)))
