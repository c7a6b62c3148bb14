"""`medlens gate BASE CANDIDATE`: what a quantization or a fine-tune gained and lost.

Both models answer the same items with the same prompts and scoring (the `medlens eval`
runner, one run folder each); the comparison is paired (gate_stats). For quantization the
next-token distributions are compared too (gate_kl). Checks use the thresholds of
gate_config; the report is stored with the candidate (gate_report).

A candidate (or base) is a registry id or path, optionally with `@int8`, `@int4` or
`@none`: the same record with the fast path's weight-only quantization set
(models/fastpath), e.g. `medlens gate medlens/gemma3-270m medlens/gemma3-270m@int8`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from medlens.errors import ConfigError, DataError
from medlens.evaluation import gate_stats
from medlens.evaluation.gate_config import Thresholds
from medlens.evaluation.gate_report import Check, GateReport, check, reports_dir, slug
from medlens.models.fastpath.options import QUANTIZE_MODES
from medlens.models.registry import ModelKind, ModelRecord, load_registry

GateKind = Literal["auto", "quantization", "finetune"]
Role = Literal["general", "target"]


@dataclass(frozen=True)
class Suite:
    task: str  # medqa | medmcqa | pubmedqa
    data_file: Path | None = None  # None: the shared default file
    limit: int | None = None
    role: Role = "general"


@dataclass
class GateConfig:
    base: str
    candidate: str
    suites: list[Suite]
    thresholds: Thresholds
    kind: GateKind = "auto"
    dtype: str | None = None
    kl: bool | None = None  # None: for quantization only
    kl_texts: Path | None = None
    kl_n: int = 16
    kl_max_tokens: int = 256
    top_k: int = 20
    n_boot: int = 2000
    seed: int = 0
    work_dir: Path | None = None
    progress: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'ID@int8' -> ('ID', 'int8'); a spec without a quantize suffix -> (spec, None)."""
    head, sep, tail = spec.rpartition("@")
    if sep and head and tail.lower() in QUANTIZE_MODES:
        return head, tail.lower()
    return spec, None


def gate_record(spec: str, settings: Any, kind: ModelKind | None = "generator") -> ModelRecord:
    """The registry record a spec names, with its quantize option set by the suffix."""
    model_id, quantize = parse_spec(spec)
    registry = load_registry(settings)
    if spec in registry:  # an id that happens to contain '@'
        model_id, quantize = spec, None
    record = registry.resolve(model_id, kind=kind)
    if quantize is None:
        return record
    return replace(record, id=spec, options={**record.options, "quantize": quantize})


def is_quantized(record: ModelRecord) -> bool:
    return str(record.options.get("quantize", "none")).lower() != "none"


def resolve_kind(kind: GateKind, base: ModelRecord, cand: ModelRecord) -> str:
    if kind != "auto":
        return kind
    same_weights = base.source == cand.source
    return "quantization" if same_weights or is_quantized(cand) else "finetune"


def kl_text_set(path: Path | None, n: int) -> tuple[list[str], str]:
    """Texts for the KL comparison and where they came from: a .txt file (paragraphs
    separated by blank lines), a JSONL file of {"text"} objects, or (default) the first n
    MedQA questions with their options from the shared data."""
    if path is not None:
        if not path.is_file():
            raise DataError(f"KL text file not found: {path}")
        raw = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            texts = [str(json.loads(line)["text"]) for line in raw.splitlines() if line.strip()]
        else:
            texts = [p.strip() for p in raw.split("\n\n") if p.strip()]
        return texts[:n], str(path)
    from medlens.evaluation.datasets import get_task, resolve_data_file

    task = get_task("medqa")
    file = resolve_data_file(task, None)
    items = task.reader(file)[:n]
    texts = [
        it.question + "\n" + "\n".join(f"{k}. {v}" for k, v in it.options.items()) for it in items
    ]
    return texts, f"{file} (first {len(texts)} questions + options)"


def _can_loglik(backend: object) -> bool:
    from medlens.models.protocols import LoglikelihoodScorer

    return isinstance(backend, LoglikelihoodScorer)


def run_suite(
    suite: Suite, backends: dict[str, Any], names: dict[str, str], work: Path, progress: bool
) -> dict[str, Any]:
    """Score one suite with both models (same items, prompt, scoring); paired stats."""
    from medlens.evaluation.datasets import get_task, resolve_data_file
    from medlens.evaluation.prompting import load_eval_prompt
    from medlens.evaluation.runner import RunConfig, run_eval

    task = get_task(suite.task)
    data_file = resolve_data_file(task, suite.data_file)
    items = task.reader(data_file)
    prompt = load_eval_prompt(task.prompt)
    # One scoring for both: log-likelihood only if both backends can give it.
    scoring = "loglik" if all(_can_loglik(b) for b in backends.values()) else "generate"
    correct: dict[str, dict[str, bool]] = {}
    for role, backend in backends.items():
        cfg = RunConfig(
            task=task,
            model=names[role],
            data_file=data_file,
            fewshot_file=data_file,
            # Named by model: gates sharing a --work-dir reuse the base's run (resume).
            output=work / f"{suite.task}-{suite.role}" / slug(names[role]),
            prompt=prompt,
            scoring=scoring,  # type: ignore[arg-type]
            limit=suite.limit,
        )
        res = run_eval(cfg, items, [], backend, progress=progress)
        correct[role], _ = gate_stats.load_predictions(res.output)
    return {"correct": correct, "scoring": scoring, "data_file": str(data_file)}


def decide(
    kind: str, qa: list[dict[str, Any]], kl: dict[str, Any] | None, th: Thresholds
) -> tuple[list[Check], list[str]]:
    """The checks for a quantization or a fine-tune (thresholds: gate_thresholds.toml)."""
    checks: list[Check] = []
    notes: list[str] = []
    for r in qa:
        name, diff, p = r["suite"], r["difference"], r["mcnemar"]["p_value"]
        behind_p = p if diff < 0 else 1.0  # a significant *gain* is never a failure
        if kind == "quantization":
            checks += [
                check(f"{name}: accuracy drop", 0.0 - diff, "<=", th.qa.max_accuracy_drop),
                check(f"{name}: McNemar p if behind", behind_p, ">=", th.qa.alpha),
                check(f"{name}: flip rate", r["flip_rate"], "<=", th.qa.max_flip_rate),
            ]
        elif r.get("role") == "target":
            checks += [
                check(f"{name}: target gain", diff, ">=", th.finetune.min_target_gain),
                check(
                    f"{name}: target gain McNemar p",
                    p if diff > 0 else 1.0,
                    "<=",
                    th.finetune.alpha,
                ),
            ]
        else:
            checks.append(
                check(f"{name}: general QA drop", 0.0 - diff, "<=", th.finetune.max_general_drop)
            )
    if kind == "finetune" and not any(r.get("role") == "target" for r in qa):
        notes.append("No target task given (--target): only the regression side was checked.")
    if kl is not None and kind == "quantization":
        checks += [
            check("KL mean (nats)", kl["mean"], "<=", th.kl.max_mean_kl),
            check("KL p99 (nats)", kl["p99"], "<=", th.kl.max_p99_kl),
            check("top-1 agreement", kl["top1_agreement"], ">=", th.kl.min_top1_agreement),
            check("abs ln(PPL ratio)", abs(kl["ln_ppl_ratio"]), "<=", th.kl.max_abs_ln_ppl_ratio),
        ]
        if kl.get("top_k"):
            notes.append(f"KL approximated from top-{kl['top_k']} log-probabilities.")
    if not checks:
        raise ConfigError("Nothing to check: give at least one QA suite or the KL comparison.")
    return checks, notes


def _paired_rows(
    results: list[tuple[Suite, dict[str, Any]]], n_boot: int, seed: int
) -> list[dict[str, Any]]:
    rows = []
    for suite, res in results:
        c = res["correct"]
        p = gate_stats.paired_qa(suite.task, c["base"], c["candidate"], n_boot=n_boot, seed=seed)
        rows.append(
            {
                **p.to_dict(),
                "role": suite.role,
                "scoring": res.get("scoring"),
                "data_file": res.get("data_file"),
            }
        )
    return rows


def _backend_meta(backend: Any) -> dict[str, Any]:
    info = getattr(backend, "info", None)
    keys = ("model_id", "backend", "source", "revision", "weights_hash", "dtype", "is_test")
    return {k: getattr(info, k, None) for k in keys} if info is not None else {}


def run_gate(cfg: GateConfig, settings: Any) -> GateReport:
    """Load both models, score the suites, compare distributions, decide."""
    from medlens.models.session import default_session

    if os.environ.get("MEDLENS_QUANTIZE"):
        raise ConfigError(
            "MEDLENS_QUANTIZE is set: it would quantize base and candidate alike. Unset it "
            "and name the quantization in the spec (e.g. ID@int8)."
        )
    records = {
        "base": gate_record(cfg.base, settings),
        "candidate": gate_record(cfg.candidate, settings),
    }
    kind = resolve_kind(cfg.kind, records["base"], records["candidate"])
    session = default_session()
    backends = {
        role: session.generator(rec, settings, dtype=cfg.dtype) for role, rec in records.items()
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = cfg.work_dir or reports_dir(settings.data_dir, cfg.candidate) / "runs" / stamp
    names = {"base": cfg.base, "candidate": cfg.candidate}
    results = [(s, run_suite(s, backends, names, work, cfg.progress)) for s in cfg.suites]
    qa = _paired_rows(results, cfg.n_boot, cfg.seed)
    kl = None
    want_kl = cfg.kl if cfg.kl is not None else kind == "quantization"
    meta: dict[str, Any] = {**cfg.meta, "runs": str(work)}
    if want_kl:
        from medlens.evaluation.gate_kl import model_kl

        texts, source = kl_text_set(cfg.kl_texts, cfg.kl_n)
        stats_ = model_kl(
            backends["base"], backends["candidate"], texts, cfg.kl_max_tokens, cfg.top_k
        )
        kl = {**stats_.to_dict(), "texts": source, "max_tokens_per_text": cfg.kl_max_tokens}
    checks, notes = decide(kind, qa, kl, cfg.thresholds)
    info = {role: _backend_meta(b) for role, b in backends.items()}
    meta.update(
        base_backend=info["base"],
        candidate_backend=info["candidate"],
        candidate_weights_hash=info["candidate"].get("weights_hash"),
        candidate_options=records["candidate"].options,
        thresholds=cfg.thresholds.to_dict(),
        n_boot=cfg.n_boot,
        seed=cfg.seed,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if any(i.get("is_test") for i in info.values()):
        notes.append("TEST MODEL involved: the figures say nothing about a medical model.")
    return GateReport(cfg.base, cfg.candidate, kind, qa, kl, checks, notes, meta)


def gate_from_predictions(
    base: Path,
    candidate: Path,
    thresholds: Thresholds,
    *,
    kind: str = "quantization",
    role: Role = "general",
    suite: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> GateReport:
    """The gate on two fixed prediction files (records with id + correct)."""
    a, meta_a = gate_stats.load_predictions(base)
    b, meta_b = gate_stats.load_predictions(candidate)
    name = suite or meta_a.get("task") or "predictions"
    notes = []
    for key in ("task", "data_sha256", "prompt_sha256", "scoring"):
        if meta_a.get(key) and meta_b.get(key) and meta_a[key] != meta_b[key]:
            notes.append(f"the two runs differ in {key}: not the same items/prompts/scoring")
    qa = _paired_rows(
        [(Suite(name, role=role), {"correct": {"base": a, "candidate": b}})], n_boot, seed
    )
    for row in qa:
        if row["only_base"] or row["only_candidate"]:
            notes.append(f"{row['only_base']} + {row['only_candidate']} unpaired items ignored")
    checks, more = decide(kind, qa, None, thresholds)
    meta = {
        "thresholds": thresholds.to_dict(),
        "n_boot": n_boot,
        "seed": seed,
        "base_file": str(base),
        "candidate_file": str(candidate),
    }
    return GateReport(
        str(meta_a.get("model") or base),
        str(meta_b.get("model") or candidate),
        kind,
        qa,
        None,
        checks,
        notes + more,
        meta,
    )
