"""Log-likelihood scoring and token sampling for the transformers generator.

Scoring: the shared context is run once (KV cache); each continuation then costs only its
own tokens, and only their logits are materialised (262k-wide rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medlens.models.protocols import GenerationConfig


def loglikelihood(
    model: Any, tokenizer: Any, device: Any, context: str, continuations: Sequence[str]
) -> list[float]:
    """Sum of log p(continuation tokens | context), raw text (no chat template)."""
    import copy

    import torch

    ctx_ids = tokenizer(context, add_special_tokens=True)["input_ids"]
    prefixes: dict[tuple[int, ...], tuple[Any, Any]] = {}
    scores: list[float] = []
    with torch.inference_mode():
        for cont in continuations:
            whole = tokenizer(context + cont, add_special_tokens=True)["input_ids"]
            # Tokens may merge across the boundary: score what follows the context's
            # longest common prefix (lm-eval-harness convention).
            n = 0
            while n < min(len(ctx_ids), len(whole)) and ctx_ids[n] == whole[n]:
                n += 1
            n = max(1, n)
            if n >= len(whole):
                scores.append(0.0)
                continue
            prefix = tuple(whole[:n])
            if prefix not in prefixes:
                prefixes[prefix] = prefill_text(model, device, list(prefix))
            cache, last = prefixes[prefix]
            target = torch.tensor(whole[n:], device=device)
            rows = [last[None]]
            if len(whole) - n > 1:
                out = model(
                    input_ids=target[None, :-1],
                    past_key_values=copy.deepcopy(cache),
                    use_cache=True,
                ).logits[0]
                rows.append(out)
            logp = torch.log_softmax(torch.cat(rows).float(), dim=-1)
            scores.append(float(logp.gather(1, target[:, None]).sum()))
    return scores


def prefill_text(model: Any, device: Any, ids: list[int]) -> tuple[Any, Any]:
    """(KV cache, next-token logits) after a text-only prompt."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config.get_text_config())
    logits = model(
        input_ids=torch.tensor([ids], device=device),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[0, -1]
    return cache, logits


def pick_token(
    logits: Any,
    banned: Any,
    eos_ids: frozenset[int],
    config: GenerationConfig,
    step: int,
    generator: Any,
) -> int:
    """The next token: greedy at temperature 0, else top-p sampling; never a banned id,
    and no end-of-sequence before `config.min_new_tokens`."""
    import torch

    logits = logits.float()
    if banned.numel():
        logits[banned] = float("-inf")
    if step < config.min_new_tokens:
        logits[list(eos_ids)] = float("-inf")
    if config.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / config.temperature, dim=-1)
    if config.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < config.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator))
