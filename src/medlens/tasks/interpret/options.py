"""What one interpretation should do: `InterpretOptions` (the model records' facts, such as
prompt format and preprocessing, come in here too), and the stage clock that times each
stage and announces it as an Event."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medlens.models.registry import PreprocessSpec
from medlens.tasks.interpret.crosscheck import DEFAULT_HIGH, DEFAULT_LOW
from medlens.tasks.streaming import Event, EventCallback, emit

if TYPE_CHECKING:
    from medlens.models.registry import ModelRecord

STAGES = (
    "gate",
    "preprocess",
    "scores",
    "compare",
    "prompt",
    "generate",
    "parse",
    "language",
    "crosscheck",
    "urgency",
    "ground",
    "similar",
)


@dataclass(frozen=True)
class InterpretOptions:
    """What to do; the model records' facts (format, preprocessing) come in here too."""

    prompt_format: str = "medgemma-v1"
    generator_preprocess: PreprocessSpec = field(default_factory=lambda: PreprocessSpec(896))
    encoder_preprocess: PreprocessSpec | None = None
    thinking: bool = False
    language: str = "en"
    # On by default, as in `medlens interpret`: server jobs and follow-ups check a
    # non-English report the same way (one language behaviour everywhere).
    back_translate: bool = True
    prompt: str | None = None  # a user-typed instruction replacing the template's
    prompt_name: str | None = None  # force a prompt file (default: chosen from the study)
    max_new_tokens: int = 300
    scores: bool = True
    label_set: str = "cxr"
    gate: bool = True
    urgent_probe: str | None = None  # path of the "urgent" probe (settings.probes["urgent"])
    similar_k: int = 5
    high_threshold: float = DEFAULT_HIGH
    low_threshold: float = DEFAULT_LOW
    ground: bool = False  # boxes for the report's findings (tasks/interpret/grounding.py)
    compare: bool = False  # a change per finding when the study has a prior (comparison.py)

    @classmethod
    def from_records(
        cls,
        generator: ModelRecord,
        encoder: ModelRecord | None = None,
        settings: Any = None,
        **overrides: Any,
    ) -> InterpretOptions:
        """Options for these registry records (+ settings: probes, language, max tokens)."""
        kw: dict[str, Any] = {
            "prompt_format": generator.prompt_format,
            "thinking": generator.thinking,
            "generator_preprocess": generator.preprocess or PreprocessSpec(896),
            "encoder_preprocess": encoder.preprocess if encoder else None,
        }
        if settings is not None:
            kw["max_new_tokens"] = settings.max_new_tokens
            kw["language"] = settings.language
            if "urgent" in (settings.probes or {}):
                kw["urgent_probe"] = str(settings.probes["urgent"])
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


class StageClock:
    """Times the stages (seconds, summed per name) and emits a `stage` Event as each starts."""

    def __init__(self, on_event: EventCallback | None) -> None:
        self.timings: dict[str, float] = {}
        self.on_event = on_event

    def stage(self, name: str) -> _Timer:
        emit(self.on_event, Event("stage", stage=name, progress=STAGES.index(name) / len(STAGES)))
        return _Timer(self, name)


class _Timer:
    def __init__(self, clock: StageClock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        t = self.clock.timings
        t[self.name] = round(t.get(self.name, 0.0) + time.perf_counter() - self.start, 6)
