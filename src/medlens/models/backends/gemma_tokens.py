"""Token-level facts about Gemma tokenizers used by the transformers generator."""

from __future__ import annotations

from typing import Any

from medlens.models.chat_template import GEMMA_CONTROL_STRINGS


def sanitise_user_text(text: str) -> str:
    for control in GEMMA_CONTROL_STRINGS:
        text = text.replace(control, "")
    return text


def hidden_special_ids(tokenizer: Any) -> frozenset[int]:
    """Special tokens never shown as text, except the thinking markers."""
    from medlens.models.thinking import THINK_END, THINK_START

    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, t in tokenizer.added_tokens_decoder.items() if t.special)
    ids.discard(tokenizer.convert_tokens_to_ids(THINK_START))
    ids.discard(tokenizer.convert_tokens_to_ids(THINK_END))
    return frozenset(ids)


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.add(end_of_turn)
    return frozenset(ids)
