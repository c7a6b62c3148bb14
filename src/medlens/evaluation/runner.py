"""Score a QA task with any generator backend, resumably, into a run folder.

Scoring:
- "loglik": the backend's `loglikelihood(context, continuations)` (the
  `LoglikelihoodScorer` protocol) over the answer labels (" A" ... " D", or " yes" /
  " no" / " maybe") after a raw-text prompt; the prediction is the highest-scoring label
  (first one on an exact tie, flagged in the record). Labels are single tokens for
  Gemma, so no length normalisation is needed.
- "generate": a chat turn, greedy decoding, then the strict extractor
  (`evaluation.extract`); unparseable replies are scored wrong and counted.
- "auto": loglik when the backend can, else generate.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from medlens.errors import BackendUnavailable, ConfigError
from medlens.evaluation import records as rec
from medlens.evaluation.datasets import QAItem, TaskSpec, sha256_file
from medlens.evaluation.extract import extract
from medlens.evaluation.prompting import EvalPrompt, order_pool, select_shots
from medlens.models.protocols import GenerationConfig, Generator, LoglikelihoodScorer, collect

Scoring = Literal["auto", "loglik", "generate"]


@dataclass
class RunConfig:
    task: TaskSpec
    model: str
    data_file: Path
    fewshot_file: Path
    output: Path
    prompt: EvalPrompt
    scoring: Scoring = "auto"
    shots: int = 0
    seed: int = 0
    limit: int | None = None
    max_new_tokens: int = 32


@dataclass(frozen=True)
class RunResult:
    output: Path
    summary: rec.Summary
    scored_now: int
    skipped: int
    metadata: dict[str, Any]


def choose_scoring(requested: Scoring, backend: object) -> Literal["loglik", "generate"]:
    can = isinstance(backend, LoglikelihoodScorer)
    if requested == "loglik" and not can:
        raise BackendUnavailable(
            "This backend cannot return log-probabilities; use --scoring generate "
            "(or a transformers backend)."
        )
    if requested == "auto":
        return "loglik" if can else "generate"
    return requested


def score_loglik(
    backend: LoglikelihoodScorer, prompt: EvalPrompt, item: QAItem, shots: list[QAItem]
) -> dict[str, Any]:
    context = prompt.loglik_context(item, shots)
    conts = prompt.continuations(item)
    scores = [float(s) for s in backend.loglikelihood(context, conts)]
    if len(scores) != len(conts):
        raise BackendUnavailable("The backend returned a wrong number of log-likelihoods.")
    labels = list(item.options)
    best = max(scores)
    winners = [lbl for lbl, s in zip(labels, scores, strict=True) if s == best]
    return {
        "prediction": winners[0],
        "scores": dict(zip(labels, scores, strict=True)),
        "tie": len(winners) > 1,
        "context_chars": len(context),
    }


def score_generate(
    backend: Generator,
    prompt: EvalPrompt,
    item: QAItem,
    shots: list[QAItem],
    max_new_tokens: int,
    seed: int,
) -> dict[str, Any]:
    messages = prompt.messages(item, shots)
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed)
    text, st = collect(backend, messages, cfg)
    ex = extract(text, item.options)
    return {
        "prediction": ex.label,
        "raw_output": text,
        "extract_reason": ex.reason,
        "prompt_tokens": st.prompt_tokens,
        "output_tokens": st.output_tokens,
    }


def _backend_meta(backend: object) -> dict[str, Any]:
    info = getattr(backend, "info", None)
    if info is None:
        return {}
    keys = (
        "model_id",
        "backend",
        "source",
        "revision",
        "weights_hash",
        "dtype",
        "device",
        "is_test",
    )
    return {k: getattr(info, k, None) for k in keys}


def _medlens_version() -> str:
    try:
        from importlib.metadata import version

        return version("medlens")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "unknown"


def build_metadata(cfg: RunConfig, backend: object, scoring: str, n_items: int) -> dict[str, Any]:
    return {
        "task": cfg.task.name,
        "model": cfg.model,
        "backend": _backend_meta(backend),
        "scoring": scoring,
        "shots": cfg.shots,
        "seed": cfg.seed,
        "limit": cfg.limit,
        "n_items": n_items,
        "max_new_tokens": cfg.max_new_tokens if scoring == "generate" else None,
        "prompt": cfg.prompt.name,
        "prompt_version": cfg.prompt.version,
        "prompt_sha256": cfg.prompt.sha256,
        "data_file": str(cfg.data_file),
        "data_sha256": sha256_file(cfg.data_file),
        "fewshot_file": str(cfg.fewshot_file) if cfg.shots else None,
        "fewshot_sha256": sha256_file(cfg.fewshot_file) if cfg.shots else None,
        "medlens_version": _medlens_version(),
        "python": platform.python_version(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _check_resumable(out: Path, meta: dict[str, Any]) -> None:
    old = rec.read_json(out / rec.RUN)
    diff = [k for k in rec.RESUME_KEYS if old.get(k) != meta.get(k)]
    if diff:
        raise ConfigError(
            f"{out} holds a different run ({', '.join(diff)} differ); use a new --output "
            "folder or delete this one."
        )


def run_eval(
    cfg: RunConfig,
    items: Sequence[QAItem],
    pool: Sequence[QAItem],
    backend: object,
    *,
    progress: bool = True,
) -> RunResult:
    """Score `items` (already read, not yet limited) into cfg.output; resumes a partial run."""
    chosen = list(items[: cfg.limit] if cfg.limit else items)
    scoring = choose_scoring(cfg.scoring, backend)
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    meta = build_metadata(cfg, backend, scoring, len(chosen))
    records_path = out / rec.RECORDS
    if (out / rec.RUN).is_file():
        _check_resumable(out, meta)
        meta["started_at"] = rec.read_json(out / rec.RUN).get("started_at", meta["started_at"])
        meta["resumed_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    elif records_path.is_file() and records_path.stat().st_size:
        raise ConfigError(f"{records_path} exists without run.json; use a new --output folder.")
    meta["status"] = "running"
    rec.write_json(out / rec.RUN, meta)

    done = {r["id"]: r for r in rec.read_records(records_path, repair=True)}
    todo = [it for it in chosen if it.id not in done]
    ordered = order_pool(list(pool), cfg.seed) if cfg.shots else []
    writer = rec.RecordWriter(records_path)
    scored = 0
    try:
        with _progress(progress, len(chosen), len(chosen) - len(todo), cfg) as advance:
            for item in todo:
                shots = select_shots(ordered, item, cfg.shots)
                t0 = time.perf_counter()
                if scoring == "loglik":
                    res = score_loglik(backend, cfg.prompt, item, shots)  # type: ignore[arg-type]
                else:
                    res = score_generate(
                        backend,
                        cfg.prompt,
                        item,
                        shots,  # type: ignore[arg-type]
                        cfg.max_new_tokens,
                        cfg.seed,
                    )
                record = {
                    "id": item.id,
                    "gold": item.gold,
                    **res,
                    "correct": res["prediction"] == item.gold,
                    "shot_ids": [s.id for s in shots],
                    "seconds": round(time.perf_counter() - t0, 4),
                }
                writer.write(record)
                done[item.id] = record
                scored += 1
                advance()
    finally:
        writer.close()
    chosen_records = [done[it.id] for it in chosen if it.id in done]
    summary = rec.summarize(chosen_records)
    meta["status"] = "complete" if len(chosen_records) == len(chosen) else "partial"
    meta["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    rec.write_json(out / rec.RUN, meta)
    rec.write_json(
        out / rec.SUMMARY,
        {"task": cfg.task.name, "model": cfg.model, "scoring": scoring, **summary.to_dict()},
    )
    return RunResult(out, summary, scored, len(chosen) - len(todo), meta)


class _progress:
    """A rich progress bar (or nothing) exposing one `advance()` callable."""

    def __init__(self, enabled: bool, total: int, completed: int, cfg: RunConfig) -> None:
        self.enabled = enabled
        self.total, self.completed, self.cfg = total, completed, cfg
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.__enter__()
        tid = self._bar.add_task(
            f"{self.cfg.task.name} {self.cfg.model}", total=self.total, completed=self.completed
        )
        return lambda: self._bar.advance(tid)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
