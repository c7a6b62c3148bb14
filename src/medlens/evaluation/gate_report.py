"""The quality gate's report: checks, JSON and markdown, stored by candidate (torch-free).

Reports live in <data_dir>/gate-reports/<candidate id slug>/: one `<UTC time>-<hash>.json`
and `.md` per run (hash: the candidate's weights hash when known, else the report's) and
`latest.json` / `latest.md`, which `medlens models info ID` shows.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medlens.disclaimer import DISCLAIMER
from medlens.errors import DataError

REPORTS_DIR = "gate-reports"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float
    threshold: float
    rule: str  # e.g. "<=", ">="

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "rule": self.rule,
        }


def check(name: str, value: float, rule: str, threshold: float) -> Check:
    ok = value <= threshold if rule == "<=" else value >= threshold
    return Check(name, bool(ok) and not math.isnan(value), value, threshold, rule)


@dataclass
class GateReport:
    base: str
    candidate: str
    kind: str  # "quantization" or "finetune"
    qa: list[dict[str, Any]] = field(default_factory=list)  # PairedQA.to_dict() + role
    kl: dict[str, Any] | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "candidate": self.candidate,
            "kind": self.kind,
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
            "qa": self.qa,
            "kl": self.kl,
            "notes": self.notes,
            "meta": self.meta,
            "disclaimer": DISCLAIMER,
        }


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _qa_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| suite | n | base | candidate | difference (95% paired bootstrap CI) "
        "| McNemar exact p | right->wrong | wrong->right |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b, ci = r["accuracy_base"], r["accuracy_candidate"], r["difference_ci95"]
        out.append(
            f"| {r['suite']}{' (' + r['role'] + ')' if r.get('role') else ''} | {r['n']} "
            f"| {_pct(a['value'])} ({a['k']}/{a['n']}) | {_pct(b['value'])} ({b['k']}/{b['n']}) "
            f"| {r['difference'] * 100:+.1f} pt "
            f"({ci['low'] * 100:+.1f} to {ci['high'] * 100:+.1f}) "
            f"| {r['mcnemar']['p_value']:.4g} | {r['right_to_wrong']} | {r['wrong_to_right']} |"
        )
    return out


def to_markdown(data: dict[str, Any]) -> str:
    """The report as markdown (from `GateReport.to_dict()` or a stored JSON)."""
    verdict = "PASSED" if data["passed"] else "FAILED"
    lines = [
        f"# Quality gate: {data['candidate']} vs {data['base']} ({data['kind']}) - {verdict}",
        "",
    ]
    if data.get("qa"):
        lines += ["## Paired QA (same items, prompts and scoring)", "", *_qa_lines(data["qa"]), ""]
    kl = data.get("kl")
    if kl:
        approx = f" (APPROXIMATE, top-{kl['top_k']} log-probabilities)" if kl.get("top_k") else ""
        lines += [
            f"## Next-token distributions{approx}",
            "",
            f"{kl['n_tokens']} tokens of {kl['n_texts']} texts: KL(base || candidate) mean "
            f"{kl['mean']:.5f}, median {kl['median']:.5f}, p99 {kl['p99']:.4f}, max "
            f"{kl['max']:.4f} nats; top-1 agreement {_pct(kl['top1_agreement'])}; "
            f"ln(PPL ratio) {kl['ln_ppl_ratio']:+.5f} (PPL {kl['ppl_base']:.3f} -> "
            f"{kl['ppl_candidate']:.3f})",
            "",
        ]
    lines += ["## Checks", "", "| check | value | rule | result |", "|---|---|---|---|"]
    for c in data["checks"]:
        mark = "pass" if c["passed"] else "FAIL"
        lines.append(
            f"| {c['name']} | {c['value']:.4g} | {c['rule']} {c['threshold']:g} | {mark} |"
        )
    for note in data.get("notes", []):
        lines.append(f"\nNote: {note}")
    if data.get("meta", {}).get("command"):
        lines += ["", f"Command: `{data['meta']['command']}`"]
    lines += ["", f"_{data.get('disclaimer', DISCLAIMER)}_", ""]
    return "\n".join(lines)


def slug(model_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-._@" else "_" for c in model_id).strip("_")


def reports_dir(data_dir: Path, model_id: str) -> Path:
    return Path(data_dir).expanduser() / REPORTS_DIR / slug(model_id)


def _json(data: dict[str, Any]) -> str:
    def safe(o: Any) -> Any:
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: safe(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [safe(v) for v in o]
        return o

    return json.dumps(safe(data), indent=2, ensure_ascii=False, default=str) + "\n"


def store(report: GateReport, data_dir: Path) -> Path:
    """Write the report (JSON + markdown) beside the candidate's others; returns the JSON."""
    data = report.to_dict()
    text = _json(data)
    key = str(report.meta.get("candidate_weights_hash") or "").rpartition(":")[2][:12]
    key = key or hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = reports_dir(data_dir, report.candidate)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    md = to_markdown(data)
    path = folder / f"{stamp}-{key}.json"
    for target, body in ((path, text), (path.with_suffix(".md"), md)):
        target.write_text(body, encoding="utf-8")
    (folder / "latest.json").write_text(text, encoding="utf-8")
    (folder / "latest.md").write_text(md, encoding="utf-8")
    return path


def latest(data_dir: Path, model_id: str) -> dict[str, Any] | None:
    """The latest stored report for a candidate id, or None."""
    path = reports_dir(data_dir, model_id) / "latest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg}).") from exc


def reports_for(data_dir: Path, model_id: str) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Latest report per gated id: the model itself and its `@int8` / `@int4` variants
    ({id: (markdown path, report)})."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for gated in (model_id, *(f"{model_id}@{q}" for q in ("int8", "int4"))):
        data = latest(data_dir, gated)
        if data is not None:
            out[gated] = (reports_dir(data_dir, gated) / "latest.md", data)
    return out


def summary_lines(data: dict[str, Any]) -> list[str]:
    """A few lines for `medlens models info`: verdict, paired QA, KL."""
    verdict = "PASSED" if data.get("passed") else "FAILED"
    when = data.get("meta", {}).get("finished_at", "")
    lines = [f"{data['candidate']} vs {data['base']}: {verdict} ({data['kind']}) {when}".rstrip()]
    for r in data.get("qa", []):
        a, b, ci = r["accuracy_base"], r["accuracy_candidate"], r["difference_ci95"]
        lines.append(
            f"{r['suite']} n={r['n']}: {_pct(a['value'])} -> {_pct(b['value'])} "
            f"({r['difference'] * 100:+.1f} pt, 95% CI {ci['low'] * 100:+.1f} to "
            f"{ci['high'] * 100:+.1f}), McNemar exact p={r['mcnemar']['p_value']:.3g}, "
            f"flips {r['right_to_wrong']} right->wrong / {r['wrong_to_right']} wrong->right"
        )
    kl = data.get("kl")
    if kl:
        lines.append(
            f"KL mean {kl['mean']:.4f} nats (p99 {kl['p99']:.3f}), top-1 agreement "
            f"{_pct(kl['top1_agreement'])}, ln(PPL ratio) {kl['ln_ppl_ratio']:+.4f}"
        )
    failed = [c["name"] for c in data.get("checks", []) if not c["passed"]]
    if failed:
        lines.append("failed checks: " + "; ".join(failed))
    return lines
