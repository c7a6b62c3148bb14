"""The scripted test generator: fixed text per prompt kind, no weights, no torch.

`medlens/test-scripted` (source `scripted:default`, or `scripted:/path/script.toml`) answers
a report request, a grounding request (the prompt asks for `box_2d`), a comparison request
(the prompt asks for `"changes"`) and anything else with the script's fixed text. It exists
because random-weight test models cannot produce meaningful boxes or change labels; its
output is always labelled as a test model's (`is_test`), like the other test models.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from medlens.errors import ConfigError
from medlens.models.protocols import (
    BackendInfo,
    ChatMessage,
    GenerationConfig,
    GenerationStats,
    StreamingGenerator,
    TextPart,
)

KINDS = ("report", "grounding", "comparison", "other")


def load_script(location: str) -> dict[str, str]:
    """The script's texts: a built-in name (`default`) or a TOML file path."""
    if location.endswith(".toml"):
        path = Path(location).expanduser()
        if not path.is_file():
            raise ConfigError(f"Scripted model: no script file {path}.")
        text = path.read_text("utf-8")
    else:
        fname = f"{location or 'default'}.toml"
        try:
            text = resources.files("medlens.models.scripts").joinpath(fname).read_text("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"Scripted model: no built-in script {location!r}.") from None
    data = tomllib.loads(text)
    missing = [k for k in KINDS if not isinstance(data.get(k), str)]
    if missing:
        raise ConfigError(f"Scripted model script lacks text for: {', '.join(missing)}.")
    return {k: data[k] for k in KINDS}


def prompt_kind(messages: Sequence[ChatMessage]) -> str:
    """Which kind of request this is, read from the prompt's own words."""
    text = " ".join(
        p.text
        for m in messages
        if m.role != "assistant"
        for p in m.content
        if isinstance(p, TextPart)
    )
    if "box_2d" in text:
        return "grounding"
    if '"changes"' in text:
        return "comparison"
    if "radiology report" in text or "Findings" in text:
        return "report"
    return "other"


class ScriptedGenerator(StreamingGenerator):
    def __init__(self, info: BackendInfo, script: dict[str, str]) -> None:
        self.info = info
        self.script = script
        self.calls: list[str] = []  # prompt kinds answered, in order (tests read it)

    def _generate(
        self, messages: Sequence[ChatMessage], config: GenerationConfig, stats: GenerationStats
    ) -> Iterator[str]:
        kind = prompt_kind(messages)
        self.calls.append(kind)
        words = self.script[kind].split(" ")
        pieces = [w + " " for w in words[:-1]] + [words[-1]]
        stats.prompt_tokens = sum(
            self.count_tokens(p.text)
            for m in messages
            for p in m.content
            if isinstance(p, TextPart)
        )
        stats.images_encoded = sum(len(m.images) for m in messages)
        stats.output_tokens = 0
        for piece in pieces[: max(config.max_new_tokens, 1)]:
            stats.output_tokens += 1
            yield piece
        stats.finish_reason = "stop" if len(pieces) <= config.max_new_tokens else "length"

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def load_generator(record: Any, settings: Any) -> ScriptedGenerator:
    location = record.parsed_source.location
    info = BackendInfo(
        model_id=record.id,
        backend="scripted",
        source=record.source,
        revision=record.revision or "local",
        weights_hash="",
        dtype="none",
        device="cpu",
        is_test=True,  # scripted text is never a medical model's output
    )
    return ScriptedGenerator(info, load_script(location))
