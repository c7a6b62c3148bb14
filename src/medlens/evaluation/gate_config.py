"""Thresholds of the quality gate: package defaults (gate_thresholds.toml) overlaid by a
user file (`--thresholds FILE`, else <data_dir>/gate_thresholds.toml when present).

Unknown tables or keys are errors: a typo must not silently keep a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from medlens.errors import ConfigError

DEFAULTS_FILE = "gate_thresholds.toml"
USER_FILE = "gate_thresholds.toml"  # in the data dir


@dataclass(frozen=True)
class QAThresholds:
    max_accuracy_drop: float
    alpha: float
    max_flip_rate: float


@dataclass(frozen=True)
class KLThresholds:
    max_mean_kl: float
    max_p99_kl: float
    min_top1_agreement: float
    max_abs_ln_ppl_ratio: float


@dataclass(frozen=True)
class FinetuneThresholds:
    max_general_drop: float
    min_target_gain: float
    alpha: float


@dataclass(frozen=True)
class Thresholds:
    qa: QAThresholds
    kl: KLThresholds
    finetune: FinetuneThresholds
    sources: tuple[str, ...]  # files read, defaults first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TABLES = {"qa": QAThresholds, "kl": KLThresholds, "finetune": FinetuneThresholds}


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Thresholds file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _merge(base: dict[str, Any], over: dict[str, Any], where: str) -> None:
    for table, values in over.items():
        if table not in _TABLES or not isinstance(values, dict):
            raise ConfigError(f"{where}: unknown table [{table}] (known: {', '.join(_TABLES)}).")
        known = {f.name for f in fields(_TABLES[table])}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{where}: unknown key {table}.{key} (known: {sorted(known)}).")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}: {table}.{key} must be a number, not {value!r}.")
            base.setdefault(table, {})[key] = float(value)


def load_thresholds(path: Path | None = None, data_dir: Path | None = None) -> Thresholds:
    """Defaults, then the user file (explicit path, else data_dir's file if it exists)."""
    text = resources.files("medlens.evaluation").joinpath(DEFAULTS_FILE).read_text("utf-8")
    merged: dict[str, Any] = {}
    _merge(merged, tomllib.loads(text), f"medlens/evaluation/{DEFAULTS_FILE}")
    sources = [f"medlens/evaluation/{DEFAULTS_FILE}"]
    user = path
    if user is None and data_dir is not None and (Path(data_dir) / USER_FILE).is_file():
        user = Path(data_dir) / USER_FILE
    if user is not None:
        _merge(merged, _read(Path(user)), str(user))
        sources.append(str(user))
    try:
        tables = {name: cls(**merged[name]) for name, cls in _TABLES.items()}
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"Gate thresholds incomplete: {exc}") from exc
    return Thresholds(**tables, sources=tuple(sources))
