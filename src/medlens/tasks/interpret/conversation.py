"""Follow-up questions on a study (multi-turn), with image encodings reused.

The first turn is exactly the interpretation request (same prompt, same images) and
the model's report; each follow-up appends a user question and the answer. Every turn
re-sends the whole history (Gemma chat templates need strictly alternating turns), but
the images keep their `ImagePart.key`, and the generator backends cache vision encodings
by that key, so later turns run no vision tower (`GenerationStats.images_encoded == 0`;
checked in tests/tasks/test_tasks_conversation.py).

`to_dict()` / `Conversation.from_dict(data, study, options)` let the server persist a
conversation without the pixels (they come back from the study).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medlens.errors import MedLensError
from medlens.tasks.streaming import Event, EventCallback, emit

if TYPE_CHECKING:
    from medlens.models.protocols import ChatMessage, GenerationStats, Generator, ImagePart
    from medlens.tasks.interpret.options import InterpretOptions
    from medlens.tasks.interpret.result import Interpretation
    from medlens.tasks.interpret.study import Study

MAX_TURNS = 20
MAX_QUESTION_CHARS = 2000


@dataclass
class Turn:
    question: str
    answer: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    images_encoded: int = 0
    images_cached: int = 0
    seconds: float = 0.0


@dataclass
class Conversation:
    study_id: str
    first_request: list[ChatMessage]  # system? + user turn with the images
    report: str  # the assistant's first answer (the report's raw text)
    prompt_format: str
    turns: list[Turn] = field(default_factory=list)
    max_new_tokens: int = 300

    @classmethod
    def start(
        cls, study: Study, interpretation: Interpretation, options: InterpretOptions
    ) -> Conversation:
        """Rebuild the interpretation's first request (same images, same keys)."""
        from medlens.tasks.interpret.language import language_instruction
        from medlens.tasks.interpret.model_inputs import (
            choose_prompt,
            generator_parts,
            image_list_line,
            untrusted_fields,
        )
        from medlens.tasks.prompting import build_messages

        if interpretation.report is None:
            raise MedLensError(
                "This study has no report (its images were refused); "
                "follow-up questions need an interpreted study."
            )
        from dataclasses import replace

        # Same images, views and order as the interpretation saw (gate-recognised views).
        accepted = [
            replace(study.images[g.image_index], view=g.view)  # type: ignore[arg-type]
            for g in interpretation.gate
            if g.accepted
        ]
        parts: list[ImagePart] = generator_parts(accepted, options.generator_preprocess)
        messages = build_messages(
            choose_prompt(study, accepted, options),
            prompt_format=options.prompt_format,
            images=parts,
            extra_lines=[
                image_list_line(accepted, study.modality),
                language_instruction(options.language),
            ],
            data=untrusted_fields(study, accepted),
            thinking=options.thinking,
            instruction=options.prompt,
        )
        return cls(
            study.study_id,
            messages,
            interpretation.report.raw_text,
            options.prompt_format,
            max_new_tokens=options.max_new_tokens,
        )

    def history(self, question: str | None = None) -> list[ChatMessage]:
        """Messages for the next request (alternating user/assistant after the system)."""
        from medlens.models.protocols import ChatMessage
        from medlens.tasks.prompting import load_prompt

        followup = load_prompt("followup").instruction
        msgs = list(self.first_request)
        msgs.append(ChatMessage.text("assistant", self.report))
        for turn in self.turns:
            msgs.append(ChatMessage.text("user", f"{followup} {turn.question}"))
            msgs.append(ChatMessage.text("assistant", turn.answer))
        if question is not None:
            msgs.append(ChatMessage.text("user", f"{followup} {question}"))
        return msgs

    def ask(
        self,
        generator: Generator,
        question: str,
        *,
        on_event: EventCallback | None = None,
        stats: GenerationStats | None = None,
    ) -> Turn:
        """Ask one follow-up question; the answer streams as token events."""
        import time

        from medlens.models.protocols import GenerationConfig, GenerationStats
        from medlens.models.thinking import ThinkingFilter

        question = " ".join((question or "").split())
        if not question:
            raise MedLensError("Empty follow-up question.")
        if len(question) > MAX_QUESTION_CHARS:
            raise MedLensError(f"Question too long (over {MAX_QUESTION_CHARS} characters).")
        from medlens.tasks.prompting import sanitize_untrusted

        # Typed by a person, but it must not forge chat turns (<end_of_turn> ...).
        question = sanitize_untrusted(question, MAX_QUESTION_CHARS)
        if len(self.turns) >= MAX_TURNS:
            raise MedLensError(
                f"This conversation reached its {MAX_TURNS}-turn limit; start a new one."
            )
        stats = stats or GenerationStats()
        t0 = time.perf_counter()
        emit(on_event, Event("stage", stage="followup", progress=0.0))
        filt, pieces = ThinkingFilter(), []
        config = GenerationConfig(max_new_tokens=self.max_new_tokens)
        for piece in generator.stream(self.history(question), config, stats):
            visible = filt.feed(piece)
            if visible:
                pieces.append(visible)
                emit(on_event, Event("token", stage="followup", text=visible))
        pieces.append(filt.flush())
        turn = Turn(
            question,
            "".join(pieces).strip(),
            stats.prompt_tokens,
            stats.output_tokens,
            stats.images_encoded,
            stats.images_cached,
            round(time.perf_counter() - t0, 6),
        )
        self.turns.append(turn)
        return turn

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_id": self.study_id,
            "report": self.report,
            "prompt_format": self.prompt_format,
            "max_new_tokens": self.max_new_tokens,
            "turns": [t.__dict__.copy() for t in self.turns],
        }

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        study: Study,
        interpretation: Interpretation,
        options: InterpretOptions,
    ) -> Conversation:
        conv = cls.start(study, interpretation, options)
        conv.report = data.get("report", conv.report)
        conv.turns = [Turn(**t) for t in data.get("turns", [])]
        return conv


class ConversationStore:
    """In-memory conversations per study id (bounded, thread-safe)."""

    def __init__(self, max_items: int = 64) -> None:
        self._items: OrderedDict[str, Conversation] = OrderedDict()
        self._lock = threading.Lock()
        self.max_items = max_items

    def get(self, study_id: str) -> Conversation | None:
        with self._lock:
            conv = self._items.get(study_id)
            if conv is not None:
                self._items.move_to_end(study_id)
            return conv

    def put(self, conv: Conversation) -> None:
        with self._lock:
            self._items[conv.study_id] = conv
            self._items.move_to_end(conv.study_id)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
