"""Output languages and the back-translation check.

The report is written in the requested language with the English section headings kept
(so the parser stays exact; tasks.report_parser also knows translated headings). The
optional check asks the model to translate its report back into English, runs the
English labeler on that, and flags findings whose status the back-translation changes
relative to what the encoder scored (the non-English text itself cannot be labelled).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from medlens.errors import ConfigError
from medlens.tasks.interpret.result import LanguageCheck

if TYPE_CHECKING:
    from medlens.models.protocols import GenerationStats, Generator
    from medlens.tasks.interpret.labeler import Mention
    from medlens.tasks.interpret.options import InterpretOptions

LANGUAGES: dict[str, str] = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "pt": "Portuguese",
    "zh": "Chinese (Simplified)",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "ar": "Arabic",
    "ru": "Russian",
    "nl": "Dutch",
    "tr": "Turkish",
    "pl": "Polish",
    "vi": "Vietnamese",
    "id": "Indonesian",
    "sw": "Swahili",
}


def normalise_language(code: str | None) -> str:
    """An ISO 639-1 code MedLens supports ("es", "ES", "es-MX" → "es")."""
    code = (code or "en").strip().lower().replace("_", "-").split("-")[0]
    if code not in LANGUAGES:
        raise ConfigError(
            f"Unsupported language {code!r}. Supported: {', '.join(sorted(LANGUAGES))}."
        )
    return code


def language_instruction(code: str) -> str:
    """The trusted instruction line for the output language ('' for English)."""
    code = normalise_language(code)
    if code == "en":
        return ""
    name = LANGUAGES[code]
    return (
        f"Write the whole report in {name}. Keep the section headings exactly as "
        "'Technique:', 'Findings:' and 'Impression:' in English; write everything else "
        f"in {name}. Keep medical terms accurate and keep left and right exact."
    )


def back_translate(
    generator: Generator,
    text: str,
    *,
    prompt_format: str,
    max_new_tokens: int = 400,
    stats: GenerationStats | None = None,
) -> str:
    """The model's English translation of `text` (thinking removed)."""
    from medlens.models.protocols import GenerationConfig
    from medlens.models.thinking import strip_thinking
    from medlens.tasks.prompting import build_messages, load_prompt

    template = load_prompt("back-translate")
    messages = build_messages(template, prompt_format=prompt_format, data={"report": text})
    out = "".join(
        generator.stream(messages, GenerationConfig(max_new_tokens=max_new_tokens), stats)
    )
    return strip_thinking(out).strip()


def check_back_translation(
    language: str,
    back_translation: str,
    mentions: Mapping[str, Mention],
    scores: Mapping[str, float] | None,
    *,
    high: float,
    low: float,
) -> LanguageCheck:
    """Flag findings where the back-translated report and the encoder disagree."""
    from medlens.tasks.interpret.crosscheck import assertions_from

    mismatches: list[str] = []
    for label, score in (scores or {}).items():
        m = mentions.get(label)
        if m is not None and m.status == "positive" and score < low:
            mismatches.append(f"{label}: asserted in the back-translation, encoder {score:.2f}")
        elif m is not None and m.status == "negative" and score >= high:
            mismatches.append(f"{label}: negated in the back-translation, encoder {score:.2f}")
    if not back_translation.strip():
        mismatches.append("The back-translation is empty: the report could not be checked.")
    return LanguageCheck(
        language=language,
        back_translation=back_translation,
        assertions=assertions_from(mentions),
        mismatches=mismatches,
    )


def english_for_checks(
    generator: Generator,
    text: str,
    language: str,
    scores: Mapping[str, float],
    options: InterpretOptions,
    *,
    chest: bool,
) -> tuple[str, str, LanguageCheck | None]:
    """The pipeline's language stage: (English text the labeler reads, its source, the
    back-translation check). An English report is read as it is; another language only
    through the back-translation check of a chest X-ray report, when asked for."""
    if language == "en":
        return text, "report", None
    if not (chest and options.back_translate and text):
        return "", "none", None
    from medlens.tasks.interpret.labeler import label_report

    bt = back_translate(
        generator,
        text,
        prompt_format=options.prompt_format,
        max_new_tokens=max(options.max_new_tokens, 200),
    )
    check = check_back_translation(
        language,
        bt,
        label_report(bt),
        scores,
        high=options.high_threshold,
        low=options.low_threshold,
    )
    return bt, "back_translation", check
