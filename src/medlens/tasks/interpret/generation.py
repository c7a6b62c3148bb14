"""The report stages: prompt (messages for the generator), generate (streamed, thinking
stripped) and parse (sections, and the model's own "this is not a chest X-ray")."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from medlens.tasks.interpret.language import language_instruction
from medlens.tasks.interpret.model_inputs import choose_prompt, image_list_line, untrusted_fields
from medlens.tasks.interpret.report_parser import parse_report
from medlens.tasks.prompting import PromptTemplate, build_messages
from medlens.tasks.streaming import Event, EventCallback, emit

if TYPE_CHECKING:
    from medlens.models.protocols import ChatMessage, GenerationStats, Generator, ImagePart
    from medlens.tasks.interpret.options import InterpretOptions
    from medlens.tasks.interpret.result import ReportSections
    from medlens.tasks.interpret.study import Study, StudyImage

# The report prompts ask the model to say so when an image is not a chest X-ray.
_WRONG_MODALITY = re.compile(
    r"\b(?:is|are|does) not (?:appear to be |show )?(?:a |an )?"
    r"chest (?:x-?rays?|radiographs?)\b",
    re.I,
)


def build_prompt(
    study: Study,
    images: Sequence[StudyImage],
    parts: Sequence[ImagePart],
    options: InterpretOptions,
    language: str,
) -> tuple[PromptTemplate, list[ChatMessage], list[str]]:
    """(prompt template, chat messages, names of the context fields that were filled)."""
    template = choose_prompt(study, images, options)
    data = untrusted_fields(study, images)
    messages = build_messages(
        template,
        prompt_format=options.prompt_format,
        images=list(parts),
        extra_lines=[image_list_line(images, study.modality), language_instruction(language)],
        data=data,
        thinking=options.thinking,
        instruction=options.prompt,
    )
    return template, messages, [k for k, v in data.items() if v]


def generate_report(
    generator: Generator,
    messages: Sequence[ChatMessage],
    max_new_tokens: int,
    on_event: EventCallback | None,
    warnings: list[str],
) -> tuple[str, GenerationStats]:
    """The model's visible answer (thinking stripped), streamed as `token` events."""
    from medlens.models.protocols import GenerationConfig, GenerationStats
    from medlens.models.thinking import ThinkingFilter

    stats = GenerationStats()
    filt, pieces = ThinkingFilter(), []
    config = GenerationConfig(max_new_tokens=max_new_tokens)
    for piece in generator.stream(messages, config, stats):
        visible = filt.feed(piece)
        if visible:
            pieces.append(visible)
            emit(on_event, Event("token", stage="generate", text=visible))
    tail = filt.flush()
    if tail:
        pieces.append(tail)
        emit(on_event, Event("token", stage="generate", text=tail))
    text = "".join(pieces).strip()
    if not text and filt.thought:
        warnings.append("The model produced only a thought and no answer.")
    return text, stats


def parse_text(text: str, modality: str, warnings: list[str]) -> ReportSections:
    """Report sections; a warning when the model says an image is no chest X-ray."""
    report = parse_report(text)
    if modality == "cxr" and _WRONG_MODALITY.search(text):
        warnings.append(
            "The model says an image is not a chest X-ray: check the input "
            "before reading this report."
        )
    return report
