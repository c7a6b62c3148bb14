"""Urgency keywords for reports written in French, Spanish, German, Portuguese or Italian.

The urgency rules (tasks.interpret.urgency) read the English labeler's assertions. A
non-English report is normally read through its English back-translation (on by default
in the CLI and the server alike). When there is none (`--no-back-translate`, or the model
returned an empty translation) these keyword rules read the report itself, so a French
"pneumothorax" still makes a study urgent instead of leaving urgency to the scores. They
cover only the findings with an urgent rule (pneumothorax, pneumoperitoneum, pleural
effusion size, tension), and yield the same `Mention`s, so the same rule ids fire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medlens.tasks.interpret.labeler import Mention, Status
from medlens.tasks.interpret.result import UrgencyReason


@dataclass(frozen=True)
class Lexicon:
    """One language's terms (regexes, case-insensitive)."""

    terms: dict[str, str]  # urgency-rule label -> the finding's names
    negation: str  # "no ..." cues before the term, in the same sentence
    uncertain: str  # "possible ..." cues anywhere in the sentence
    large: str
    moderate: str
    tension: str


LEXICONS: dict[str, Lexicon] = {
    "fr": Lexicon(
        terms={
            "Pneumothorax": r"pneumothorax",
            "Pneumoperitoneum": r"pneumop[ée]ritoine|air libre (?:intra-?abdominal|sous)",
            "Pleural Effusion": r"[ée]panchements? pleura(?:l|ux)",
        },
        negation=r"\b(?:pas d(?:e\b|')|sans\b|absence d(?:e\b|')|aucun\w*|ni\b)",
        uncertain=r"\b(?:possible|probable|suspicion|suspect\w*|doute\w*|ne peut (?:[êe]tre )?"
        r"(?:exclu|[ée]limin[ée])\w*)",
        large=r"\b(?:abondant\w*|important\w*|grande?s?|massi[fv]\w*|de grande abondance)\b",
        moderate=r"\b(?:mod[ée]r[ée]\w*|moyenne abondance)\b",
        tension=r"pneumothorax (?:sous|en) tension|pneumothorax compressif|d[ée]viation "
        r"m[ée]diastinale",
    ),
    "es": Lexicon(
        terms={
            "Pneumothorax": r"neumot[oó]rax",
            "Pneumoperitoneum": r"neumoperitoneo|aire libre (?:intraperitoneal|subdiafragm)",
            "Pleural Effusion": r"derrames? pleura(?:l|les)",
        },
        negation=r"\b(?:no\b|sin\b|ausencia de\b|ni\b|descart\w+)",
        uncertain=r"\b(?:posibles?|probables?|sospech\w+|no se (?:puede )?descarta\w*)",
        large=r"\b(?:gran|grandes?|masivos?|abundantes?|importantes?|extensos?)\b",
        moderate=r"\bmoderad[oa]s?\b",
        tension=r"neumot[oó]rax a tensi[oó]n|desviaci[oó]n (?:del )?mediast\w*",
    ),
    "de": Lexicon(
        terms={
            "Pneumothorax": r"pneumothorax",
            "Pneumoperitoneum": r"pneumoperitoneum|freie (?:intraabdominelle )?luft",
            "Pleural Effusion": r"pleuraerg(?:u|ü)ss\w*|pleuraler? erg(?:u|ü)ss\w*",
        },
        negation=r"\b(?:kein\w*|ohne\b|nicht\b|ausschluss)",
        uncertain=r"\b(?:m(?:ö|oe)glich\w*|wahrscheinlich\w*|verdacht\w*|fraglich\w*|"
        r"nicht (?:sicher )?auszuschlie(?:ß|ss)en)",
        large=r"\b(?:gro(?:ß|ss)\w*|ausgedehnt\w*|massiv\w*|ausgepr(?:ä|ae)gt\w*)",
        moderate=r"\b(?:m(?:ä|ae)(?:ß|ss)ig\w*|mittelgro(?:ß|ss)\w*)",
        tension=r"spannungspneumothorax|mediastinalverschiebung|mediastinalshift",
    ),
    "pt": Lexicon(
        terms={
            "Pneumothorax": r"pneumot[oó]rax",
            "Pneumoperitoneum": r"pneumoperit[oô]nio|ar livre (?:intraperitoneal|subdiafragm)",
            "Pleural Effusion": r"derrames? pleura(?:l|is)",
        },
        negation=r"\b(?:n[ãa]o\b|sem\b|aus[êe]ncia de\b|nem\b)",
        uncertain=r"\b(?:poss[íi]ve(?:l|is)|prov[áa]ve(?:l|is)|suspeit\w+|"
        r"n[ãa]o se pode (?:excluir|descartar))",
        large=r"\b(?:grandes?|volumos[oa]s?|maci[çc][oa]s?|extens[oa]s?|importantes?)\b",
        moderate=r"\bmoderad[oa]s?\b",
        tension=r"pneumot[oó]rax hipertensivo|desvio (?:do )?mediastin\w*",
    ),
    "it": Lexicon(
        terms={
            "Pneumothorax": r"pneumotorace",
            "Pneumoperitoneum": r"pneumoperitoneo|aria libera (?:endo|intra)?peritoneal\w*",
            "Pleural Effusion": r"versamento pleurico|versamenti pleurici",
        },
        negation=r"\b(?:non\b|senza\b|assenza di\b|n[ée]\b)",
        uncertain=r"\b(?:possibil\w+|probabil\w+|sospett\w+|dubbi\w+|"
        r"non si pu[òo] escludere)",
        large=r"\b(?:abbondant\w*|massiv\w*|ampi\w*|grand\w*|cospicu\w*|importante)\b",
        moderate=r"\b(?:moderat\w*|medi\w* entit[àa])\b",
        tension=r"pneumotorace (?:iperteso|ipertensivo)|spostamento (?:del )?mediastin\w*",
    ),
}
_STRENGTH = {"negative": 0, "uncertain": 1, "positive": 2}


@dataclass(frozen=True)
class NativeReading:
    """What the keyword rules found in a non-English report."""

    language: str
    mentions: dict[str, Mention] = field(default_factory=dict)
    reasons: tuple[UrgencyReason, ...] = ()  # text rules (tension), with native evidence


def has_native_rules(language: str) -> bool:
    return language in LEXICONS


def read_native(language: str, text: str) -> NativeReading | None:
    """The urgency findings of a report in `language` (None: no keyword rules for it)."""
    lex = LEXICONS.get(language)
    if lex is None:
        return None
    mentions: dict[str, Mention] = {}
    reasons: list[UrgencyReason] = []
    for sentence in _sentences(text):
        for label, term in lex.terms.items():
            m = _mention(lex, label, term, sentence)
            old = mentions.get(label)
            if m is not None and (old is None or _STRENGTH[m.status] > _STRENGTH[old.status]):
                mentions[label] = m  # the strongest statement wins: over-triage is safer
        hit = re.search(lex.tension, sentence, re.I)
        if hit and not re.search(lex.negation, sentence[: hit.start()], re.I):
            reasons.append(
                UrgencyReason(
                    rule_id="T01",
                    level="urgent",
                    reason="Tension physiology mentioned.",
                    evidence=sentence,
                )
            )
    return NativeReading(language, mentions, tuple(reasons[:1]))


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.;!?])\s+|\n+", text or "")
    return [p.strip() for p in parts if p.strip()]


def _mention(lex: Lexicon, label: str, term: str, sentence: str) -> Mention | None:
    hit = re.search(term, sentence, re.I)
    if hit is None:
        return None
    # Cues count within the term's clause: "sin neumotórax, gran derrame" negates one only.
    start = max(sentence.rfind(c, 0, hit.start()) for c in ",:") + 1
    ends = [i for i in (sentence.find(c, hit.end()) for c in ",:") if i >= 0]
    clause = sentence[start : min(ends, default=len(sentence))]
    before = sentence[start : hit.start()]
    status: Status = "positive"
    if re.search(lex.uncertain, clause, re.I):
        status = "uncertain"
    elif re.search(lex.negation, before, re.I):
        status = "negative"
    severity = None
    if re.search(lex.large, clause, re.I):
        severity = "large"
    elif re.search(lex.moderate, clause, re.I):
        severity = "moderate"
    return Mention(label=label, status=status, severity=severity, evidence=sentence)
