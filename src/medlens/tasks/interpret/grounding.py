"""Grounding: boxes for the findings a report names (or for named anatomy) on one image.

Prompt `cxr-grounding` (versioned data in tasks/prompts/) asks MedGemma 1.5 for
`{"box_2d": [y0, x0, y1, x1], "label"}` over the padded square; `grounding_parse` reads
the answer (never raising) and maps it back to the original pixel grid; here each box is
matched to a requested label and linked to the report sentence that names it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from medlens.tasks.interpret.grounding_parse import norm_to_pixels, parse_boxes
from medlens.tasks.interpret.labeler import label_report, sentence_mentions, split_sentences
from medlens.tasks.interpret.result import Region
from medlens.tasks.prompting import build_messages, load_prompt, prompt_setting, sanitize_untrusted

if TYPE_CHECKING:
    from medlens.models.protocols import ChatMessage, Generator, ImagePart
    from medlens.tasks.interpret.labeler import Mention
    from medlens.tasks.interpret.result import ReportSections
    from medlens.tasks.prompting import PromptTemplate

PROMPT = "cxr-grounding"
MAX_LABELS = 12
MAX_LABEL_CHARS = 80
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class Grounding:
    """What one grounding request made."""

    regions: list[Region] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    raw_text: str = ""
    scale: str = "none"
    template: PromptTemplate | None = None


def finding_labels(mentions: dict[str, Mention]) -> list[str]:
    """Labels to ground from the report: positive or uncertain findings, with their side
    ("right pleural effusion"); 'No Finding' and 'Support Devices' are not boxed."""
    out = []
    for label, m in mentions.items():
        if m.status == "negative" or label in ("No Finding", "Support Devices"):
            continue
        side = f"{m.laterality} " if m.laterality in ("left", "right") else ""
        out.append(f"{side}{label.lower()}")
    return out[:MAX_LABELS]


def clean_labels(labels: Sequence[str]) -> list[str]:
    """User-supplied names made safe for the instruction (they are the query itself)."""
    out = []
    for raw in labels:
        text = sanitize_untrusted(raw, MAX_LABEL_CHARS).replace('"', "'")
        if text and text not in out:
            out.append(text)
    return out[:MAX_LABELS]


def grounding_messages(
    labels: Sequence[str], part: ImagePart, prompt_format: str
) -> tuple[PromptTemplate, list[ChatMessage]]:
    template = load_prompt(PROMPT)
    example = str(prompt_setting(PROMPT, "answer_example", ""))
    quoted = "; ".join(f'"{label}"' for label in labels)
    return template, build_messages(
        template,
        prompt_format=prompt_format,
        images=[part],
        extra_lines=[example, f"To locate: {quoted}."],
    )


def ground_image(
    generator: Generator,
    part: ImagePart,
    size: tuple[int, int],
    labels: Sequence[str],
    *,
    prompt_format: str,
    report: ReportSections | None = None,
    image_index: int = 0,
) -> Grounding:
    """Ask for boxes of `labels` on one image of `size` (width, height); never raises
    on a bad answer (its problems become warnings and drop reasons)."""
    from medlens.models.protocols import GenerationConfig
    from medlens.models.thinking import strip_thinking

    out = Grounding()
    if not labels:
        out.warnings.append("Grounding: nothing to locate (no finding or label named).")
        return out
    out.template, messages = grounding_messages(labels, part, prompt_format)
    max_tokens = int(prompt_setting(PROMPT, "max_new_tokens", 1000))
    raw = "".join(generator.stream(messages, GenerationConfig(max_new_tokens=max_tokens)))
    out.raw_text = strip_thinking(raw).strip()
    parsed = parse_boxes(raw)
    out.scale, out.dropped = parsed.scale, list(parsed.dropped)
    out.warnings.extend(f"Grounding: {w}" for w in parsed.warnings)
    out.warnings.extend(f"Grounding dropped {d}." for d in parsed.dropped)
    sentences = report_sentences(report)
    model = generator.info.model_id
    for box in parsed.boxes:
        notes = list(box.warnings)
        if parsed.scale == "0-1":
            notes.append("0-1 coordinates seen (scaled to 0-1000)")
        label = match_label(box.label, labels)
        if label is None:
            label = box.label
            notes.append("label matches none of the requested names; kept as the model gave it")
        out.regions.append(
            Region(
                label=label,
                image_index=image_index,
                box=list(norm_to_pixels(box.norm, *size)),
                box_norm=[round(v, 2) for v in box.norm],
                source_sentence=link_sentence(label, sentences),
                model=model,
                warnings=notes,
            )
        )
    return out


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def match_label(said: str, wanted: Sequence[str]) -> str | None:
    """The requested label the model's label stands for: same words, then same CheXpert
    finding (and no contradicting side), then the requested words all present."""
    said_words = _words(said)
    for w in wanted:
        if _words(w) == said_words:
            return w
    said_m = label_report(said)
    for w in wanted:
        want_m = label_report(w)
        common = set(said_m) & set(want_m)
        if any(_sides_agree(said_m[c], want_m[c]) for c in common):
            return w
    for w in wanted:
        if _words(w) and _words(w) <= said_words:
            return w
    return None


def _sides_agree(a: Mention, b: Mention) -> bool:
    return a.laterality is None or b.laterality is None or a.laterality == b.laterality


def report_sentences(report: ReportSections | None) -> list[str]:
    """Findings then impression sentences (technique and comparison name no finding)."""
    if report is None:
        return []
    text = " ".join(t for t in (report.findings, report.impression) if t)
    return split_sentences(text or report.raw_text)


def link_sentence(label: str, sentences: Sequence[str]) -> str | None:
    """The first report sentence that asserts the label's finding (same side when both
    say one), else the first that contains all of the label's words."""
    wanted = label_report(label)
    for sentence in sentences:
        for m in sentence_mentions(sentence):
            target = wanted.get(m.label)
            if target and m.status != "negative" and _sides_agree(m, target):
                return sentence.strip()
    words = _words(label)
    for sentence in sentences:
        if words and words <= _words(sentence):
            return sentence.strip()
    return None
