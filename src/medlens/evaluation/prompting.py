"""Versioned evaluation prompts (data files in evaluation/prompts/) and few-shot selection.

A prompt file is TOML with `name`, `version` and the templates below; its name, version
and sha256 are written into every run's metadata so two runs can only be compared when
they used the same wording.

Few-shot examples are drawn deterministically: the pool is ordered by
sha256("<seed>:<id>") (stable under file reordering) and the first K items that are not
the item being scored (nor share its question text) are used. For PubMedQA the pool is
the trainval file (disjoint from test); for MedQA / MedMCQA, which have no shared dev
file, it is the evaluated file minus the item itself (pass --fewshot-data for another pool).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from medlens.errors import ConfigError
from medlens.evaluation.datasets import QAItem
from medlens.models.protocols import ChatMessage

_KEYS = (
    "name",
    "version",
    "instruction",
    "item",
    "option",
    "answer",
    "separator",
    "generate_instruction",
)


@dataclass(frozen=True)
class EvalPrompt:
    name: str
    version: str
    instruction: str
    item: str
    option: str
    answer: str
    separator: str
    generate_instruction: str
    sha256: str

    @property
    def tag(self) -> str:
        return f"{self.name}-v{self.version}"

    def render_item(self, item: QAItem, *, with_answer: bool = False) -> str:
        options = "\n".join(self.option.format(label=k, text=v) for k, v in item.options.items())
        text = self.item.format(
            question=item.question.strip(), options=options, context=item.context.strip()
        )
        if with_answer:
            text += self.answer.format(label=item.gold)
        return text

    def loglik_context(self, item: QAItem, shots: list[QAItem]) -> str:
        """Raw-text context ending right before the answer (for base-model scoring)."""
        parts = [self.instruction] if self.instruction else []
        parts += [self.render_item(s, with_answer=True) for s in shots]
        parts.append(self.render_item(item))
        return self.separator.join(parts)

    def continuations(self, item: QAItem) -> list[str]:
        return [self.answer.format(label=k) for k in item.options]

    def messages(self, item: QAItem, shots: list[QAItem]) -> list[ChatMessage]:
        """One user turn for chat models: instruction, solved examples, then the item."""
        parts = [self.generate_instruction]
        parts += [self.render_item(s, with_answer=True) for s in shots]
        parts.append(self.render_item(item))
        return [ChatMessage.text("user", self.separator.join(parts))]


def load_eval_prompt(name_or_path: str) -> EvalPrompt:
    """A built-in prompt by name (e.g. "mcq-v1") or a TOML file path."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" and path.is_file():
        raw = path.read_bytes()
    else:
        res = resources.files("medlens.evaluation").joinpath("prompts", f"{name_or_path}.toml")
        if not res.is_file():
            raise ConfigError(
                f"Unknown evaluation prompt {name_or_path!r} (no built-in "
                "prompts/<name>.toml and no such .toml file)."
            )
        raw = res.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Evaluation prompt {name_or_path!r} is not valid TOML: {exc}") from exc
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise ConfigError(f"Evaluation prompt {name_or_path!r} lacks {missing}.")
    return EvalPrompt(**{k: str(data[k]) for k in _KEYS}, sha256=hashlib.sha256(raw).hexdigest())


def _order_key(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def order_pool(pool: list[QAItem], seed: int) -> list[QAItem]:
    return sorted(pool, key=lambda it: _order_key(seed, it.id))


def select_shots(ordered_pool: list[QAItem], item: QAItem, k: int) -> list[QAItem]:
    """The first k pool items that are not `item` (by id or by question text)."""
    if k <= 0:
        return []
    out: list[QAItem] = []
    q = item.question.strip()
    for cand in ordered_pool:
        if cand.id == item.id or cand.question.strip() == q:
            continue
        out.append(cand)
        if len(out) == k:
            return out
    raise ConfigError(f"The few-shot pool has fewer than {k} usable examples.")
