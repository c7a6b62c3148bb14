"""Rule-based CheXpert-style labeler over radiology report text.

`label_report(text)` returns {label: Mention} for the CheXpert observations (plus two
extras urgency needs: Pneumoperitoneum, Malpositioned Device). Each Mention has a status
(positive / negative / uncertain), laterality (left / right / bilateral), severity and
the sentence it came from. The evaluation harness uses it for report F1, so it is a pure,
dependency-free function.

How it works (the CheXpert/NegBio recipe, with regexes instead of a parser):
1. split into sentences; 2. phrase rules that fix a status outright ("heart size is
normal" → Cardiomegaly negative, "lungs are clear" → Lung Opacity negative); 3. mention
patterns per label; 4. each mention is uncertain when an uncertainty cue ("may", "cannot
be excluded", "possible") is in its scope, else negative when a negation cue ("no",
"without", "negative for", "… is not seen") is, else positive. A scope ends at "but",
"however", ";", "although", or a comma followed by a new positive phrase; 5. per label,
positive beats uncertain beats negative (as CheXpert); 6. "No Finding" is positive only
when no pathology is positive or uncertain (Support Devices do not count), as CheXpert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Status = Literal["positive", "negative", "uncertain"]

CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
EXTRA_LABELS: tuple[str, ...] = ("Pneumoperitoneum", "Malpositioned Device")
ALL_LABELS = CHEXPERT_LABELS + EXTRA_LABELS
# Labels that do not stop "No Finding" (CheXpert: devices are not pathology).
_NOT_PATHOLOGY = {"No Finding", "Support Devices"}


@dataclass(frozen=True)
class Mention:
    label: str
    status: Status
    laterality: Literal["left", "right", "bilateral"] | None = None
    severity: str | None = None
    evidence: str = ""


_I = re.IGNORECASE
_PATTERNS: dict[str, list[str]] = {
    "Enlarged Cardiomediastinum": [
        r"widen(?:ed|ing) (?:of the )?(?:superior )?mediastin\w*",
        r"mediastinal widening",
        r"enlarged (?:cardio)?mediastin\w+(?: silhouette| contours?)?",
        r"(?:cardio)?mediastin\w+ (?:silhouette|contours?) (?:is |are )?(?:widened|enlarged)",
    ],
    "Cardiomegaly": [
        r"cardiomegaly",
        r"cardiac enlargement",
        r"enlarged (?:heart|cardiac silhouette)",
        r"enlargement of the (?:heart|cardiac silhouette)",
        r"(?:heart|cardiac silhouette|heart size|cardiac size) (?:is |appears |remains )?"
        r"(?:mildly |moderately |markedly |severely |slightly )?(?:enlarged|increased)",
    ],
    "Lung Lesion": [
        r"nodul(?:e|es|ar opacit\w+|ar densit\w+)",
        r"(?<!soft tissue )\bmass(?:es)?\b",
        r"\blesions?\b",
        r"\btumou?rs?\b",
        r"neoplasm",
        r"carcinoma",
        r"cavitary",
        r"\bmetasta\w+",
    ],
    "Lung Opacity": [
        r"opacit(?:y|ies)",
        r"opacification",
        r"infiltrat\w*",
        r"airspace disease",
        r"ground[- ]glass",
        r"\bhaz(?:e|y|iness)\b",
        r"interstitial (?:markings|pattern|prominence)",
        r"reticular\w*",
    ],
    "Edema": [
        r"\bedema\b",
        r"\boedema\b",
        r"(?:pulmonary|vascular) congestion",
        r"kerley b",
        r"cephalization",
        r"fluid overload",
    ],
    "Consolidation": [r"consolidat\w+", r"air bronchogram"],
    "Pneumonia": [r"pneumonia", r"pneumonic", r"infectious process", r"\binfection\b"],
    "Atelectasis": [r"atelecta\w+", r"(?:lobar |segmental )?collapse\b", r"volume loss"],
    "Pneumothorax": [r"pneumothora(?:x|ces)", r"\bptx\b"],
    "Pleural Effusion": [
        r"effusions?",
        r"pleural fluid",
        r"hydrothorax",
        r"blunt\w* (?:of )?(?:the )?(?:\w+ )?(?:costophrenic|cp) angles?",
        r"(?:costophrenic|cp) angles? (?:is |are )?blunted",
    ],
    "Pleural Other": [
        r"pleural (?:thickening|plaques?|scarring|calcification)",
        r"fibrothorax",
    ],
    "Fracture": [r"fractur\w+", r"\bfx\b"],
    "Support Devices": [
        r"(?:endotracheal|tracheostomy|nasogastric|orogastric|enteric|feeding|chest|et|ng|og)"
        r" tubes?",
        r"(?:central venous|central|picc|swan[- ]ganz|arterial|dialysis) (?:line|catheter)s?",
        r"\bpicc\b",
        r"catheters?",
        r"pacemaker",
        r"\bpacer\b",
        r"defibrillator",
        r"\baicd\b",
        r"\bicd\b",
        r"sternotomy wires?",
        r"surgical clips",
        r"\bstents?\b",
        r"port-a-cath",
        r"\blvad\b",
        r"\bdrains?\b",
        r"\bleads?\b",
        r"valve replacement",
    ],
    "Pneumoperitoneum": [
        r"pneumoperitoneum",
        r"free (?:intra-?peritoneal )?air",
        r"sub-?diaphragmatic (?:free )?air",
        r"air under the (?:right |left )?(?:hemi)?diaphragm",
    ],
    "Malpositioned Device": [
        r"malposition\w*",
        r"mal-positioned",
        r"(?:tube|catheter|line)(?: tip)? (?:\w+ ){0,4}(?:in|into|within|at) the "
        r"(?:right |left )?(?:mainstem|main stem|main) bronch\w+",
        r"(?:tube|catheter|line)(?: tip)? (?:\w+ ){0,4}(?:in|into|within) the "
        r"(?:right |left )?(?:lung|pleural space|airway|esophag\w+)",
        r"(?:tube|catheter)(?: tip)? (?:\w+ ){0,3}(?:too (?:high|low|deep)|coiled)",
        r"(?:should|recommend\w*) (?:be )?(?:advanc\w+|withdraw\w*|retract\w*|reposition\w*)",
    ],
}
_COMPILED = {label: [re.compile(p, _I) for p in pats] for label, pats in _PATTERNS.items()}

# Phrases that settle a label's status by themselves (matched before the patterns above).
_PHRASES: list[tuple[str, str, Status]] = [
    (
        r"(?:heart|cardiac) (?:size|silhouette)(?: and \w+ contours?)? (?:is |are |remains? )?"
        r"(?:normal|within normal limits|not enlarged|upper limits of normal|top normal|"
        r"unremarkable|stable)|normal (?:heart|cardiac) (?:size|silhouette)",
        "Cardiomegaly",
        "negative",
    ),
    (r"(?:heart|cardiac silhouette) is not enlarged", "Cardiomegaly", "negative"),
    (
        r"(?:cardio)?mediastin\w+ (?:silhouette|contours?)(?: and \w+ contours?)? (?:is |are )?"
        r"(?:normal|within normal limits|unremarkable|stable)|normal (?:cardio)?mediastin\w+ "
        r"(?:silhouette|contours?)",
        "Enlarged Cardiomediastinum",
        "negative",
    ),
    (
        r"lungs? (?:are |is |remain )?(?:clear|well expanded and clear)|clear lungs?",
        "Lung Opacity",
        "negative",
    ),
    (
        r"(?:costophrenic|cp) angles? (?:is |are )?(?:sharp|clear|preserved)",
        "Pleural Effusion",
        "negative",
    ),
    (r"pleural spaces? (?:is |are )?clear", "Pleural Effusion", "negative"),
    (r"no pleural abnormalit\w+", "Pleural Effusion", "negative"),
]
_PHRASES_C = [(re.compile(p, _I), label, status) for p, label, status in _PHRASES]

_NORMAL_STUDY = re.compile(
    r"no (?:acute|active) (?:cardiopulmonary|intrathoracic|cardiothoracic|chest|pulmonary)?\s*"
    r"(?:process|abnormalit\w+|disease|findings?|pathology)|normal chest (?:x-?ray|radiograph\w*|"
    r"film|study)|(?:unremarkable|normal) (?:study|examination|radiograph)|"
    r"no radiographic evidence of (?:acute )?(?:cardiopulmonary )?disease|"
    r"(?:study|examination|radiograph|chest x-?ray) (?:is|appears) (?:normal|unremarkable)|"
    r"within normal limits for age",
    _I,
)

_UNCERTAIN_PRE = re.compile(
    r"\b(?:may|might|could|possibl[ey]|probabl[ey]|likely|questionable|question of|suspicious "
    r"for|suspected|concern(?:ing)? for|suggest\w*|differential|versus|vs\.?|cannot (?:be )?"
    r"(?:excluded|ruled out)|can ?not rule out|cannot exclude|not (?:be )?excluded|rule out|"
    r"r/o|equivocal|borderline|indeterminate|atypical|presumed|consistent with)\b",
    _I,
)
_UNCERTAIN_POST = re.compile(
    r"^[^.;]*?\b(?:cannot be (?:excluded|ruled out)|(?:is |are )?not (?:be )?(?:excluded|ruled "
    r"out)|is (?:possible|suspected|likely|questioned)|are (?:possible|suspected|likely)|"
    r"(?:may|might|could) be (?:present|seen)|versus|vs\.?\b)",
    _I,
)
_NEGATION_PRE = re.compile(
    r"\b(?:no(?!\s+(?:significant |interval |substantial )?change)(?! longer)|not|without|"
    r"negative for|free of|absence of|absent|resolution of|resolved|clear of|removal of|"
    r"no longer|rather than|never|neither|nor|denies)\b",
    _I,
)
_NEGATION_POST = re.compile(
    r"^[^.;]*?\b(?:(?:is|are|was|were|has been|have been) (?:not (?:seen|identified|present|"
    r"evident|visuali[sz]ed|appreciated|demonstrated)|absent|removed|resolved)|has resolved|"
    r"have resolved|not (?:seen|identified|present|evident|appreciated)|no longer (?:seen|"
    r"present|visuali[sz]ed))",
    _I,
)
# Where a negation/uncertainty scope ends (cue and mention must share a scope).
_SCOPE_BREAK = re.compile(
    r";|\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bexcept\b|\bwhereas\b|\bwhich\b|"
    r"\bthere (?:is|are)\b|, (?=(?:with |and )?(?:a |an )?(?:small|moderate|large|mild|new|"
    r"increased|persistent|stable|worsening|improved|trace|minimal|marked|severe)\b)|"
    r"\band (?=(?:a |an )?(?:small|moderate|large|mild|new|trace|minimal|marked|severe)\b)|"
    r"\bwith (?=(?:a |an )?(?:small|moderate|large|mild|new|trace|minimal|marked|severe)\b)",
    _I,
)
_CLAUSE_BREAK = re.compile(r",|;|\band\b|\bwith\b|\bbut\b|\bwhile\b|\bwhereas\b", _I)
_LEFT = re.compile(r"\bleft\b|\blt\b", _I)
_RIGHT = re.compile(r"\bright\b|\brt\b", _I)
_BILATERAL = re.compile(r"\bbilateral\w*|\bboth\b|\bbibas\w+|\bbi-?apical", _I)
_SEVERITY = [
    ("tension", re.compile(r"\btension\b", _I)),
    ("large", re.compile(r"\b(?:large|massive|extensive|severe|marked|substantial)\b", _I)),
    ("moderate", re.compile(r"\bmoderate(?:ly)?\b", _I)),
    ("small", re.compile(r"\b(?:small|trace|tiny|minimal|minute|slight)\b", _I)),
    ("mild", re.compile(r"\bmild(?:ly)?\b", _I)),
]
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+|(?<=[.!?])$")
_HEADING = re.compile(
    r"^\s*[#*]*\s*(?:technique|comparison|findings?|impression|indication|"
    r"history|conclusion)\s*[:*]*\s*",
    _I,
)
_RANK = {"positive": 3, "uncertain": 2, "negative": 1}


def split_sentences(text: str) -> list[str]:
    """Sentences (list bullets and headings removed); decimals like 1.5 cm stay whole."""
    out = []
    for raw in _SENTENCE_SPLIT.split(text or ""):
        s = _HEADING.sub("", raw.strip().lstrip("-•*0123456789) ").strip())
        if s:
            out.append(s)
    return out


# Cues further than this from a mention are ignored. It also keeps the labeler linear on
# pathological model output (one endless "sentence" with thousands of mentions).
WINDOW = 200


def _scope_start(sentence: str, pos: int) -> int:
    start = max(0, pos - WINDOW)
    for m in _SCOPE_BREAK.finditer(sentence, start, pos):
        if m.end() <= pos:
            start = m.end()
    return start


def _scope_end(sentence: str, pos: int) -> int:
    m = _SCOPE_BREAK.search(sentence, pos, pos + WINDOW)
    return m.start() if m else min(len(sentence), pos + WINDOW)


def _status(sentence: str, start: int, end: int) -> Status:
    before = sentence[_scope_start(sentence, start) : start]
    after = sentence[end : _scope_end(sentence, end)]
    if _UNCERTAIN_PRE.search(before) or _UNCERTAIN_POST.search(after):
        return "uncertain"
    if _NEGATION_PRE.search(before) or _NEGATION_POST.search(after):
        return "negative"
    return "positive"


def _clause(sentence: str, start: int, end: int) -> str:
    lo = max(0, start - WINDOW)
    for m in _CLAUSE_BREAK.finditer(sentence, lo, start):
        lo = m.end()
    m = _CLAUSE_BREAK.search(sentence, end, end + WINDOW)
    return sentence[lo : (m.start() if m else min(len(sentence), end + WINDOW))]


def _laterality(clause: str) -> Literal["left", "right", "bilateral"] | None:
    if _BILATERAL.search(clause):
        return "bilateral"
    left, right = bool(_LEFT.search(clause)), bool(_RIGHT.search(clause))
    if left and right:
        return "bilateral"
    return "left" if left else "right" if right else None


def _severity(clause: str) -> str | None:
    for name, rx in _SEVERITY:
        if rx.search(clause):
            return name
    return None


def sentence_mentions(sentence: str) -> list[Mention]:
    """Every mention in one sentence (a label may appear more than once)."""
    found: list[Mention] = []
    taken: dict[str, list[tuple[int, int]]] = {}
    for rx, label, status in _PHRASES_C:
        for m in rx.finditer(sentence):
            taken.setdefault(label, []).append(m.span())
            clause = _clause(sentence, *m.span())
            found.append(Mention(label, status, _laterality(clause), None, sentence))
    for label, rxs in _COMPILED.items():
        for rx in rxs:
            for m in rx.finditer(sentence):
                if any(a <= m.start() < b for a, b in taken.get(label, [])):
                    continue
                taken.setdefault(label, []).append(m.span())
                clause = _clause(sentence, *m.span())
                status = _status(sentence, *m.span())
                found.append(
                    Mention(label, status, _laterality(clause), _severity(clause), sentence)
                )
    return found


def _merge(a: Mention, b: Mention) -> Mention:
    best, other = (a, b) if _RANK[a.status] >= _RANK[b.status] else (b, a)
    lat = best.laterality
    if other.status == best.status and other.laterality and other.laterality != lat:
        lat = "bilateral" if lat else other.laterality
    return Mention(
        best.label,
        best.status,
        lat,
        best.severity or (other.severity if other.status == best.status else None),
        best.evidence,
    )


def label_report(text: str) -> dict[str, Mention]:
    """Labels mentioned in a report → their Mention (labels not mentioned are absent)."""
    result: dict[str, Mention] = {}
    normal_evidence = ""
    for sentence in split_sentences(text):
        if not normal_evidence and _NORMAL_STUDY.search(sentence):
            normal_evidence = sentence
        for mention in sentence_mentions(sentence):
            prev = result.get(mention.label)
            result[mention.label] = mention if prev is None else _merge(prev, mention)
    pathology = [m for k, m in result.items() if k not in _NOT_PATHOLOGY]
    if (normal_evidence or result) and not any(
        m.status in ("positive", "uncertain") for m in pathology
    ):
        result["No Finding"] = Mention(
            "No Finding", "positive", None, None, normal_evidence or "no pathology asserted"
        )
    return result


def label_vector(text: str, labels: tuple[str, ...] = CHEXPERT_LABELS) -> dict[str, int | None]:
    """CheXpert-style coding: 1 positive, 0 negative, -1 uncertain, None not mentioned."""
    code = {"positive": 1, "negative": 0, "uncertain": -1}
    found = label_report(text)
    return {label: (code[found[label].status] if label in found else None) for label in labels}
