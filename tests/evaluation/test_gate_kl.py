"""KL divergence of the quality gate: exact (logits) and top-k approximate (OpenAI)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medlens.errors import BackendUnavailable
from medlens.evaluation import gate_kl

torch = pytest.importorskip("torch")


def _np_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    lp = p_logits - np.log(np.exp(p_logits).sum(-1, keepdims=True))
    lq = q_logits - np.log(np.exp(q_logits).sum(-1, keepdims=True))
    return (np.exp(lp) * (lp - lq)).sum(-1)


def test_kl_rows_match_a_numpy_computation() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 50, generator=g)
    b = a + 0.3 * torch.randn(6, 50, generator=g)
    targets = torch.randint(0, 50, (6,), generator=g)
    kl, agree, nll_a, nll_b = gate_kl.kl_rows(a, b, targets)
    assert kl.numpy() == pytest.approx(_np_kl(a.double().numpy(), b.double().numpy()), abs=1e-5)
    assert (agree.numpy() == (a.argmax(-1) == b.argmax(-1)).numpy()).all()
    ref = -torch.log_softmax(a, -1)[torch.arange(6), targets]
    assert nll_a.numpy() == pytest.approx(ref.numpy(), abs=1e-6)
    ref_b = -torch.log_softmax(b, -1)[torch.arange(6), targets]
    assert nll_b.numpy() == pytest.approx(ref_b.numpy(), abs=1e-6)
    same = gate_kl.kl_rows(a, a, targets)
    assert float(same[0].max()) == 0.0 and bool(same[1].all())


def _logprobs(logits: np.ndarray) -> dict[str, float]:
    lp = logits - np.log(np.exp(logits).sum())
    return {f"t{i}": float(v) for i, v in enumerate(lp)}


def _top(row: dict[str, float], k: int) -> dict[str, float]:
    return dict(sorted(row.items(), key=lambda kv: -kv[1])[:k])


def test_topk_kl_is_exact_with_the_whole_vocabulary_and_low_with_top_k() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.normal(size=40) * 2
        q = p + rng.normal(size=40)
        exact = float(_np_kl(p, q))
        full = gate_kl.topk_kl_row(_logprobs(p), _logprobs(q))
        assert full == pytest.approx(exact, abs=1e-9)
        approx = gate_kl.topk_kl_row(_top(_logprobs(p), 5), _top(_logprobs(q), 5))
        assert 0.0 <= approx <= exact + 1e-9
    row = _top(_logprobs(rng.normal(size=40)), 5)
    assert gate_kl.topk_kl_row(row, row) == pytest.approx(0.0, abs=1e-12)


class _FakeClient:
    shown_url = "http://127.0.0.1:1"

    def __init__(self, rows: list[dict[str, float]]) -> None:
        self.rows = rows

    def request_json(self, method, path, body, what=""):  # type: ignore[no-untyped-def]
        assert body["echo"] is True and body["logprobs"] == 5
        n = len(body["prompt"])
        top = [None, *self.rows[1:n]]
        tok = [None] + [max(r.values()) for r in self.rows[1:n]]
        return 200, {"choices": [{"logprobs": {"top_logprobs": top, "token_logprobs": tok}}]}


class _FakeRemote:
    model = "m"

    def __init__(self, rows: list[dict[str, float]]) -> None:
        self.client = _FakeClient(rows)

    def tokenize(self, text: str, *, add_special_tokens: bool) -> list[int]:
        return list(range(len(text.split())))


def test_openai_topk_kl_is_labelled_approximate() -> None:
    rng = np.random.default_rng(2)
    rows_p = [_top(_logprobs(rng.normal(size=30) * 2), 5) for _ in range(8)]
    rows_q = [_top(_logprobs(rng.normal(size=30) * 2), 5) for _ in range(8)]
    texts = ["a b c d e f g h"]
    same = gate_kl.model_kl(_FakeRemote(rows_p), _FakeRemote(rows_p), texts, top_k=5)
    assert same.method == "top-k approximate" and same.top_k == 5
    assert same.n_tokens == 7 and same.mean == pytest.approx(0.0, abs=1e-12)
    assert same.top1_agreement == 1.0 and same.ln_ppl_ratio == 0.0
    diff = gate_kl.model_kl(_FakeRemote(rows_p), _FakeRemote(rows_q), texts, top_k=5)
    assert diff.mean > 0 and diff.max >= diff.p99 >= diff.median


def test_mixed_backends_are_refused_with_the_alternative() -> None:
    with pytest.raises(BackendUnavailable, match="llama-perplexity"):
        gate_kl.model_kl(object(), object(), ["x y"])


@pytest.fixture(scope="module")
def tiny_pair(tiny_test_models):  # type: ignore[no-untyped-def]
    from medlens.config import load_settings
    from medlens.models.session import ModelSession

    settings = load_settings()
    base = ModelSession().generator("medlens/test-medgemma", settings, dtype="float32")
    copy = ModelSession().generator("medlens/test-medgemma", settings, dtype="float32")
    return base, copy


TEXTS = ["The chest radiograph shows no acute findings.", "Heart size is normal. No effusion."]


def test_kl_of_a_model_against_itself_is_zero(tiny_pair) -> None:  # type: ignore[no-untyped-def]
    base, copy = tiny_pair
    for cand in (base, copy):  # the same object, and the same weights loaded again
        st = gate_kl.model_kl(base, cand, TEXTS)
        assert st.method == "exact" and st.n_texts == 2 and st.n_tokens > 10
        assert st.mean == 0.0 and st.max == 0.0
        assert st.top1_agreement == 1.0 and st.ln_ppl_ratio == 0.0


def test_kl_against_a_perturbed_copy_is_positive(tiny_pair) -> None:  # type: ignore[no-untyped-def]
    base, copy = tiny_pair
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in copy.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    st = gate_kl.model_kl(base, copy, TEXTS)
    assert st.mean > 1e-4 and st.max >= st.p99 >= st.median > 0
    assert math.isfinite(st.ln_ppl_ratio) and st.ln_ppl_ratio != 0.0
    assert st.ppl_candidate == pytest.approx(st.ppl_base * math.exp(st.ln_ppl_ratio))
