"""MedLens's openai: backend against a REAL vLLM server (CPU build) on loopback.

vLLM lives in its own virtualenv (scripts/setup-vllm.sh: it pins an older transformers)
and serves Google's Gemma 3 270M, de-quantised from the PyPI GGUF to safetensors by
medlens.models.testmodels. The report path (streamed chat completion) and the
evaluation path (MedQA log-likelihood scoring through medlens.evaluation) run against
it, and its scores are checked against MedLens's own transformers backend.

Skipped when the vLLM venv is absent, unless MEDLENS_CI=1 (then it must be there).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from medlens.models.protocols import (
    ChatMessage,
    GenerationConfig,
    GenerationStats,
    LoglikelihoodScorer,
    collect,
)
from medlens.models.registry import ModelRecord

# Setup (building the test model, starting vLLM) counts toward pytest-timeout.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("MEDLENS_VLLM_VENV", REPO / ".cache" / "vllm-venv"))
SERVED = "gemma3-270m"
START_TIMEOUT_S = float(os.environ.get("MEDLENS_VLLM_START_TIMEOUT", "1200"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gemma_270m_dir() -> Path:
    from medlens.config import load_settings
    from medlens.models.testmodels import ensure_test_models

    return ensure_test_models(load_settings(), realtext=True)["gemma3-270m"]


@pytest.fixture(scope="module")
def vllm_url(gemma_270m_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = VENV / "bin" / "python"
    if not python.is_file():
        msg = f"vLLM venv not found at {VENV}; run scripts/setup-vllm.sh"
        if os.environ.get("MEDLENS_CI") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache: plenty for 1k-token requests
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    env.pop("MEDLENS_DATA_DIR", None)
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server",
           "--model", str(gemma_270m_dir), "--served-model-name", SERVED,
           "--host", "127.0.0.1", "--port", str(port),
           "--max-model-len", "1024", "--dtype", "bfloat16", "--seed", "0"]
    url = f"http://127.0.0.1:{port}/v1"
    start = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(f"vLLM exited with {proc.returncode} while starting:\n{tail}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - start > START_TIMEOUT_S:
                tail = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(f"vLLM did not answer within {START_TIMEOUT_S:.0f} s:\n{tail}")
            time.sleep(1.0)
        print(f"\nvLLM server ready in {time.monotonic() - start:.1f} s at {url}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def remote(vllm_url: str):
    """Loaded through MedLens's loader (scheme dispatch), as the app would."""
    from medlens.config import load_settings
    from medlens.models import session

    record = ModelRecord(id="vllm/gemma3-270m", kind="generator",
                         source=f"openai:{vllm_url}?model={SERVED}", context_length=1024)
    return session.load_generator(record, load_settings())


def test_report_path_streams_a_chat_completion(remote):
    messages = [ChatMessage.text("system", "You are an expert radiologist."),
                ChatMessage.text("user", "Describe a normal chest X-ray in one sentence.")]
    stats = GenerationStats()
    pieces = list(remote.stream(messages, GenerationConfig(max_new_tokens=24), stats))
    text = "".join(pieces)
    assert len(pieces) > 1 and text.strip()  # streamed, not one blob
    assert stats.finish_reason in ("stop", "length")
    assert 0 < stats.output_tokens <= 24
    # Usage agrees with vLLM's own tokenizer: the rendered prompt holds both texts.
    assert stats.prompt_tokens > remote.count_tokens("Describe a normal chest X-ray")
    assert remote.info.backend == "openai" and remote.info.weights_hash.startswith("server:")
    again, _ = collect(remote, messages, GenerationConfig(max_new_tokens=24))
    assert again == text  # greedy decoding is deterministic


def test_loglikelihood_prefers_the_true_continuation(remote):
    assert isinstance(remote, LoglikelihoodScorer)
    paris, london, banana = remote.loglikelihood(
        "The capital of France is", [" Paris", " London", " a banana"])
    assert paris > london > banana
    assert -10 < paris < 0


def test_loglikelihood_matches_transformers_backend(remote, gemma_270m_dir):
    """Same weights, two engines: vLLM (bf16) and MedLens's transformers backend (fp32)."""
    from medlens.config import load_settings
    from medlens.models import session

    local = session.load_generator(ModelRecord(
        id="local/gemma3-270m", kind="generator", source=f"path:{gemma_270m_dir}",
        dtype="float32", is_test=True), load_settings())
    context = "Question: Which organ pumps blood through the body?\nAnswer:"
    conts = [" The heart", " The liver", " The kidney"]
    got, want = remote.loglikelihood(context, conts), local.loglikelihood(context, conts)
    assert max(range(3), key=got.__getitem__) == max(range(3), key=want.__getitem__)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=0.35)  # bf16 vs fp32 activations


def test_evaluation_harness_scores_medqa_items(remote, shared_data, tmp_path):
    from medlens.evaluation import records as rec
    from medlens.evaluation.datasets import get_task, read_medqa
    from medlens.evaluation.prompting import load_eval_prompt
    from medlens.evaluation.runner import RunConfig, run_eval

    task = get_task("medqa")
    data = shared_data / task.default_file
    items = read_medqa(data)
    cfg = RunConfig(task=task, model=remote.info.model_id, data_file=data, fewshot_file=data,
                    output=tmp_path / "run", prompt=load_eval_prompt(task.prompt),
                    scoring="loglik", limit=4)
    result = run_eval(cfg, items, items, remote, progress=False)
    assert result.scored_now == 4 and result.metadata["status"] == "complete"
    lines = (tmp_path / "run" / rec.RECORDS).read_text().splitlines()
    assert len(lines) == 4
    for line in lines:
        record = json.loads(line)
        scores = record["scores"]
        assert set(scores) == set("ABCD") and all(s < 0 for s in scores.values())
        assert record["prediction"] == max(scores, key=scores.get)
