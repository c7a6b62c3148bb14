"""Distribution distance between a base model and a candidate (quantized) model.

Teacher-forced on a fixed text set: at every position both models' next-token
distributions P (base) and Q (candidate) are compared, as llama.cpp's
`llama-perplexity --kl-divergence-base/--kl-divergence` does for GGUF files:
- KL(P || Q) per token in nats (mean, median, 99th percentile, maximum),
- top-1 agreement (same arg-max token),
- ln(PPL ratio) = mean NLL_candidate - mean NLL_base of the text's actual next tokens.

transformers backends: computed exactly from the full-vocabulary logits.
OpenAI-compatible backends return only the top-k log-probabilities per prompt token
(completions with echo=true, logprobs=k; vLLM does): KL is then APPROXIMATE. The base's
top-k tokens are kept, the rest of each distribution is pooled into one bucket (by the
log-sum inequality this cannot increase KL), and a base top-k token missing from the
candidate's top-k gets the smaller of the candidate's k-th probability and its leftover
mass. The estimate tends to be low; with k >= the vocabulary it is exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medlens.errors import BackendUnavailable, ConfigError, RemoteModelError


@dataclass(frozen=True)
class KLStats:
    n_texts: int
    n_tokens: int
    mean: float
    median: float
    p99: float
    max: float
    top1_agreement: float
    ln_ppl_ratio: float
    ppl_base: float
    ppl_candidate: float
    method: str  # "exact" or "top-k approximate"
    top_k: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    kl: np.ndarray,
    agree: np.ndarray,
    nll_base: np.ndarray,
    nll_cand: np.ndarray,
    n_texts: int,
    method: str = "exact",
    top_k: int | None = None,
) -> KLStats:
    if kl.size == 0:
        raise ConfigError("The KL text set yielded no tokens to compare (texts too short?).")
    mb, mc = float(nll_base.mean()), float(nll_cand.mean())
    return KLStats(
        n_texts=n_texts,
        n_tokens=int(kl.size),
        mean=float(kl.mean()),
        median=float(np.median(kl)),
        p99=float(np.quantile(kl, 0.99)),
        max=float(kl.max()),
        top1_agreement=float(agree.mean()),
        ln_ppl_ratio=mc - mb,
        ppl_base=math.exp(mb),
        ppl_candidate=math.exp(mc),
        method=method,
        top_k=top_k,
    )


def kl_rows(base_logits: Any, cand_logits: Any, targets: Any) -> tuple[Any, Any, Any, Any]:
    """Per position: KL(P_base || Q_cand), top-1 agreement, NLL of the target under each."""
    import torch

    lp = torch.log_softmax(base_logits.float(), dim=-1)
    lq = torch.log_softmax(cand_logits.float(), dim=-1)
    # Round-off can make a tiny KL negative; KL itself never is.
    kl = (lp.exp() * (lp - lq)).sum(-1).clamp_min(0.0)
    agree = lp.argmax(-1) == lq.argmax(-1)
    t = targets[:, None]
    return kl, agree, -lp.gather(1, t)[:, 0], -lq.gather(1, t)[:, 0]


def _logits(gen: Any, ids: list[int]) -> Any:
    import torch

    with torch.inference_mode():
        out = gen.model(input_ids=torch.tensor([ids], device=gen.device))
    return out.logits[0].float().cpu()


def transformers_kl(
    base: Any, cand: Any, texts: Sequence[str], max_tokens: int = 256, chunk: int = 64
) -> KLStats:
    """Exact statistics from full-vocabulary logits (both models transformers backends)."""
    import torch

    if base.tokenizer.get_vocab() != cand.tokenizer.get_vocab():
        raise ConfigError("Base and candidate tokenizers differ: KL needs the same vocabulary.")
    parts: list[list[Any]] = [[], [], [], []]
    used = 0
    for text in texts:
        ids = base.tokenizer(text, add_special_tokens=True)["input_ids"][:max_tokens]
        if len(ids) < 2:
            continue
        used += 1
        lb, lc = _logits(base, ids)[:-1], _logits(cand, ids)[:-1]
        if lb.shape != lc.shape:
            raise ConfigError(f"Logit shapes differ: {tuple(lb.shape)} vs {tuple(lc.shape)}.")
        targets = torch.tensor(ids[1:])
        for s in range(0, len(targets), chunk):  # bound the fp32 262k-wide temporaries
            rows = kl_rows(lb[s : s + chunk], lc[s : s + chunk], targets[s : s + chunk])
            for acc, r in zip(parts, rows, strict=True):
                acc.append(r.numpy())
    if not used:
        raise ConfigError("The KL text set yielded no tokens to compare (texts too short?).")
    kl, agree, nb, nc = (np.concatenate(p) for p in parts)
    return summarize(kl, agree, nb, nc, used)


# --- top-k approximation (OpenAI-compatible servers) -------------------------------------
def topk_kl_row(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Approximate KL(P || Q) from top-k log-probabilities (see the module docstring)."""
    if not p or not q:
        raise RemoteModelError("A top-k log-probability row is empty.")
    q_floor = math.exp(min(q.values()))
    q_left = max(0.0, 1.0 - sum(math.exp(v) for v in q.values()))
    kl, p_mass, q_mass = 0.0, 0.0, 0.0
    for tok, lp in p.items():
        pt = math.exp(lp)
        qt = math.exp(q[tok]) if tok in q else min(q_floor, q_left)
        qt = max(qt, 1e-12)
        kl += pt * (lp - math.log(qt))
        p_mass += pt
        q_mass += qt
    p_rest, q_rest = max(0.0, 1.0 - p_mass), max(1e-12, 1.0 - q_mass)
    if p_rest > 1e-12:
        kl += p_rest * math.log(p_rest / q_rest)
    return max(0.0, kl)


def _echo_logprobs(gen: Any, ids: list[int], k: int) -> tuple[list[Any], list[Any]]:
    body = {
        "model": gen.model,
        "prompt": ids,
        "max_tokens": 1,
        "temperature": 0.0,
        "echo": True,
        "logprobs": k,
    }
    status, data = gen.client.request_json("POST", "completions", body, what="KL divergence")
    try:
        lp = data["choices"][0]["logprobs"]
        top, tok = lp["top_logprobs"], lp["token_logprobs"]
    except (KeyError, IndexError, TypeError):
        raise RemoteModelError(
            f"Remote model server {gen.client.shown_url} returned no prompt top-k "
            "log-probabilities (it needs completions with echo=true and logprobs=k)."
        ) from None
    if status == 404 or len(top) < len(ids) or len(tok) < len(ids):
        raise RemoteModelError("Remote server returned fewer log-probabilities than tokens.")
    return top[: len(ids)], tok[: len(ids)]


def openai_topk_kl(
    base: Any, cand: Any, texts: Sequence[str], max_tokens: int = 256, k: int = 20
) -> KLStats:
    """Approximate statistics for two OpenAI-compatible backends (top-k log-probabilities)."""
    kls: list[float] = []
    agree: list[bool] = []
    nb: list[float] = []
    nc: list[float] = []
    used = 0
    for text in texts:
        ids = base.tokenize(text, add_special_tokens=True)
        if ids is None:
            raise BackendUnavailable("The base server offers no /tokenize endpoint (vLLM does).")
        ids = ids[:max_tokens]
        if len(ids) < 2:
            continue
        used += 1
        top_b, tok_b = _echo_logprobs(base, ids, k)
        top_c, tok_c = _echo_logprobs(cand, ids, k)
        for i in range(1, len(ids)):  # position 0 has no prediction
            p, q = top_b[i] or {}, top_c[i] or {}
            kls.append(topk_kl_row(p, q))
            agree.append(max(p, key=p.__getitem__) == max(q, key=q.__getitem__))
            nb.append(-float(tok_b[i]))
            nc.append(-float(tok_c[i]))
    if not used:
        raise ConfigError("The KL text set yielded no tokens to compare (texts too short?).")
    arrays = (np.array(kls), np.array(agree), np.array(nb), np.array(nc))
    return summarize(*arrays, used, method="top-k approximate", top_k=k)


def model_kl(
    base: Any, cand: Any, texts: Sequence[str], max_tokens: int = 256, top_k: int = 20
) -> KLStats:
    """Exact for two transformers backends, approximate for two OpenAI-compatible ones."""
    if all(hasattr(g, "model") and hasattr(g, "tokenizer") for g in (base, cand)):
        return transformers_kl(base, cand, texts, max_tokens)
    if all(hasattr(g, "client") and hasattr(g, "tokenize") for g in (base, cand)):
        return openai_topk_kl(base, cand, texts, max_tokens, top_k)
    raise BackendUnavailable(
        "KL divergence needs both models on transformers backends (exact) or both on "
        "OpenAI-compatible servers (top-k approximate); for GGUF files use llama.cpp's "
        "`llama-perplexity --kl-divergence-base/--kl-divergence`. Use --no-kl to skip."
    )
