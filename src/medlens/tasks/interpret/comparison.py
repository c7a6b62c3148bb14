"""Comparison with a prior study: per-finding change and one comparison sentence.

Prompt `cxr-change` (versioned data). MedGemma 1.5's longitudinal shape: prior and
current images in ONE user turn, each introduced by a text line naming it (and its date
when known), then the question; no system turn for `medgemma-1.5`. A prior report (text,
or the report of an earlier MedLens study) is untrusted and goes into the data section.
The answer is JSON `{"comparison", "changes": [{finding, change, evidence}]}`; the parser
never raises, normalises change words and says what it could not read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medlens.errors import ConfigError
from medlens.tasks.interpret.grounding_parse import FENCE, loads_lenient
from medlens.tasks.interpret.labeler import label_report
from medlens.tasks.interpret.result import ChangeLabel, Comparison, FindingChange, PriorStudy
from medlens.tasks.prompting import (
    compose_text,
    load_prompt,
    prompt_setting,
    sanitize_untrusted,
    system_text,
)

if TYPE_CHECKING:
    from medlens.models.protocols import ChatMessage, Generator, ImagePart
    from medlens.tasks.interpret.labeler import Mention
    from medlens.tasks.interpret.study import Study, StudyImage
    from medlens.tasks.prompting import PromptTemplate

PROMPT = "cxr-change"
_CHANGE_WORDS: dict[str, ChangeLabel] = {
    "new": "new",
    "worse": "worsened",
    "worsened": "worsened",
    "worsening": "worsened",
    "increased": "worsened",
    "progressed": "worsened",
    "stable": "stable",
    "unchanged": "stable",
    "no change": "stable",
    "improved": "improved",
    "improving": "improved",
    "decreased": "improved",
    "better": "improved",
    "resolved": "resolved",
    "cleared": "resolved",
    "not assessable": "not assessable",
    "indeterminate": "not assessable",
}
_LINE = re.compile(
    r"^\s*[-*•]?\s*([A-Za-z][\w ,/()-]{1,80}?)\s*[:=-]\s*([A-Za-z ]{3,20})\s*$", re.M
)


def comparison_messages(
    study: Study,
    current: Sequence[tuple[StudyImage, ImagePart]],
    priors: Sequence[tuple[StudyImage, ImagePart]],
    prompt_format: str,
    thinking: bool = False,
) -> tuple[PromptTemplate, list[ChatMessage]]:
    """One user turn: [prior line, prior image, …, current line, current image, …, question]."""
    from medlens.models.protocols import ChatMessage, TextPart

    template = load_prompt(PROMPT)
    info = study.prior
    parts: list[Any] = []
    for n, (_img, part) in enumerate(priors, 1):
        date = f", {info.date}" if info and info.date else ""
        parts += [TextPart(f"Prior chest X-ray {n}{date}:"), part]
    for n, (_img, part) in enumerate(current, 1):
        parts += [TextPart(f"Current chest X-ray {n}:"), part]
    data = {
        "prior date": info.date if info else None,
        "prior report": info.report if info else None,
        "indication": study.context.indication,
    }
    example = str(prompt_setting(PROMPT, "answer_example", ""))
    text = compose_text(template.instruction, (example,), data)
    system = system_text(template, thinking=thinking)
    if prompt_format == "medgemma-1.5" or not system:
        if system:
            text = f"{system}\n\n{text}"
        return template, [ChatMessage("user", (*parts, TextPart(text)))]
    return template, [
        ChatMessage.text("system", system),
        ChatMessage("user", (*parts, TextPart(text))),
    ]


def compare(
    generator: Generator,
    study: Study,
    current: Sequence[tuple[StudyImage, ImagePart]],
    priors: Sequence[tuple[StudyImage, ImagePart]],
    *,
    prompt_format: str,
    thinking: bool = False,
) -> tuple[Comparison, PromptTemplate, str]:
    """(Comparison, the prompt used, the raw answer)."""
    from medlens.models.protocols import GenerationConfig
    from medlens.models.thinking import strip_thinking

    template, messages = comparison_messages(study, current, priors, prompt_format, thinking)
    max_tokens = int(prompt_setting(PROMPT, "max_new_tokens", 500))
    raw = "".join(generator.stream(messages, GenerationConfig(max_new_tokens=max_tokens)))
    answer = strip_thinking(raw).strip()
    result = parse_comparison(answer)
    result.prior = prior_record(study, len(priors))
    result.model = generator.info.model_id
    if not priors:
        result.warnings.append("No prior image: compared with the prior report only.")
    return result, template, answer


def prior_record(study: Study, n_images: int) -> PriorStudy:
    info = study.prior
    what = f"{n_images} prior image(s)" if n_images else "no prior image"
    if info and info.report:
        what += " and the prior report"
    return PriorStudy(
        description=what,
        date=info.date if info else None,
        source_study_id=info.study_id if info else None,
    )


def normalise_change(word: str) -> ChangeLabel | None:
    text = " ".join(str(word).lower().replace("_", " ").split())
    if text in _CHANGE_WORDS:
        return _CHANGE_WORDS[text]
    for key, value in _CHANGE_WORDS.items():
        if re.search(rf"\b{re.escape(key)}\b", text):
            return value
    return None


def parse_comparison(text: str) -> Comparison:
    """Comparison from the answer: the JSON object when there is one, else `finding: change`
    lines; never raises (what could not be read becomes a warning)."""
    out = Comparison()
    try:
        fenced = FENCE.findall(text or "")
        body = "\n".join(fenced) if fenced else (text or "")
        data = loads_lenient(body)
        if data is None and "{" in body:
            data = loads_lenient(body[body.find("{") : body.rfind("}") + 1])
        if isinstance(data, dict):
            _from_json(data, out)
        else:
            _from_lines(text or "", out)
    except Exception as exc:  # never raise on model output
        out.warnings.append(f"Comparison answer could not be read ({type(exc).__name__}).")
    return out


def _from_json(data: dict[str, Any], out: Comparison) -> None:
    sentence = data.get("comparison", data.get("sentence", ""))
    out.sentence = sanitize_untrusted(sentence, 600) if isinstance(sentence, str) else ""
    items = data.get("changes", [])
    if not isinstance(items, list):
        out.warnings.append("'changes' was not a list; no per-finding change read.")
        return
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("finding"), str):
            out.warnings.append(f"Change {n} dropped: not an object with a finding.")
            continue
        _add(out, item["finding"], str(item.get("change", "")), str(item.get("evidence", "")))


def _from_lines(text: str, out: Comparison) -> None:
    lines = [m for m in _LINE.finditer(text) if normalise_change(m.group(2))]
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0] if text.strip() else ""
    out.sentence = sanitize_untrusted(first, 600)
    if not text.strip():
        out.warnings.append("The comparison answer was empty.")
    elif not lines:
        out.warnings.append("No JSON and no 'finding: change' lines in the comparison answer.")
    else:
        out.warnings.append("The comparison answer was not JSON; read 'finding: change' lines.")
    for m in lines:
        _add(out, m.group(1), m.group(2), "")


def _add(out: Comparison, finding: str, change: str, evidence: str) -> None:
    label = canonical_finding(finding)
    if not label:
        out.warnings.append("A change without a finding name was dropped.")
        return
    norm = normalise_change(change)
    if norm is None:
        out.warnings.append(f"{label}: change {change[:40]!r} not understood; not assessable.")
        norm = "not assessable"
    out.changes.append(
        FindingChange(finding=label, change=norm, evidence=sanitize_untrusted(evidence, 300))
    )


def canonical_finding(text: str) -> str:
    """The CheXpert label when the labeler recognises one, else the model's words."""
    clean = sanitize_untrusted(text, 120)
    found = list(label_report(clean))
    return found[0] if len(found) == 1 else clean


def check_against_report(comparison: Comparison, mentions: dict[str, Mention]) -> None:
    """Cross-check: a finding the comparison calls new/worsened/stable should be asserted
    by the report, and one it calls resolved should not be; disagreements become warnings."""
    for ch in comparison.changes:
        m = mentions.get(ch.finding)
        asserted = m is not None and m.status != "negative"
        if ch.change in ("new", "worsened", "stable") and m is not None and not asserted:
            comparison.warnings.append(
                f"{ch.finding}: the comparison says {ch.change} but the report negates it."
            )
        elif ch.change == "resolved" and asserted:
            comparison.warnings.append(
                f"{ch.finding}: the comparison says resolved but the report still asserts it."
            )


_RELATIVE = re.compile(r"^\d{1,5} (day|week|month|year)s? (earlier|before)$")


def check_prior_date(text: str | None) -> str | None:
    """An ISO date or 'N days earlier'; anything else is a clear error."""
    if text is None or not text.strip():
        return None
    text = " ".join(text.strip().split())
    if _RELATIVE.match(text.lower()):
        return text.lower()
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(
            f"--prior-date {text!r}: use YYYY-MM-DD or a phrase such as '14 days earlier'."
        ) from None
