"""How long a job stage usually takes here: durations of finished jobs' stages on this
machine, and their median as the estimate shown beside a running stage (issue 23).

Durations live in `<data_dir>/stage-times.json` (the data folder is this machine's; a
shared PostgreSQL store still keeps timings per machine, as loading speeds differ). Only
stages that took at least MIN_RECORDED_S count: a shorter one needs no estimate, and an
instant warm model load must not drown out how long a cold one takes. With no history
there is no estimate; a guess would mislead more than silence.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HISTORY_FILE = "stage-times.json"
KEEP = 20  # most recent durations kept per stage
MIN_RECORDED_S = 1.0
_LOCK = threading.Lock()  # one writer per process; processes: the last writer wins


def stage_key(stage: str) -> str:
    """A stage label without its parenthesised note ("Loading models (the first run…)")."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", stage).strip()


@dataclass(frozen=True)
class StageEstimate:
    """The median duration of a stage over earlier runs on this machine."""

    stage: str
    seconds: float
    runs: int

    @property
    def text(self) -> str:
        shown = f"{round(self.seconds)} s" if self.seconds < 90 else f"{self.seconds / 60:.0f} min"
        plural = "s" if self.runs != 1 else ""
        return f"about {shown}, from {self.runs} earlier run{plural} on this machine"


def read_history(data_path: Path) -> dict[str, list[float]]:
    """{stage key: recent durations in seconds}; empty when none or unreadable."""
    try:
        raw = json.loads((data_path / HISTORY_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): [float(x) for x in v if isinstance(x, int | float)]
        for k, v in raw.items()
        if isinstance(v, list)
    }


def record(data_path: Path, durations: Mapping[str, float]) -> None:
    """Add one finished job's stage durations to the history (atomic rewrite)."""
    kept = {k: v for k, v in durations.items() if v >= MIN_RECORDED_S}
    if not kept:
        return
    with _LOCK:
        history = read_history(data_path)
        for key, seconds in kept.items():
            history[key] = [*history.get(key, []), round(seconds, 3)][-KEEP:]
        path = data_path / HISTORY_FILE
        tmp = path.with_name(f".{HISTORY_FILE}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(history, indent=1), "utf-8")
            os.replace(tmp, path)
        except OSError:  # a read-only data folder loses estimates, never the job
            tmp.unlink(missing_ok=True)


def estimate(data_path: Path, stage: str) -> StageEstimate | None:
    """The median of earlier runs of `stage` here; None without history."""
    key = stage_key(stage)
    runs = read_history(data_path).get(key, [])
    if not runs:
        return None
    return StageEstimate(stage=key, seconds=float(statistics.median(runs)), runs=len(runs))


def progress_fields(settings: Any, stage: str, status: str = "running") -> dict[str, Any]:
    """`eta_s` and `estimate` (its sentence) for a running job's stage; {} when none."""
    data_path = getattr(settings, "data_path", None)
    if status != "running" or data_path is None or not stage:
        return {}
    found = estimate(data_path, stage)
    if found is None:
        return {}
    return {"eta_s": round(found.seconds, 1), "estimate": found.text}


class StageTimer:
    """Times the stages a job goes through, from one progress report to the next."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._current: tuple[str, float] | None = None
        self.durations: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        """The job is now in `stage` (the same stage again changes nothing)."""
        key, now = stage_key(stage), self._clock()
        if self._current is not None and self._current[0] == key:
            return
        self._close(now)
        self._current = (key, now)

    def finish(self) -> dict[str, float]:
        """Close the running stage; {stage key: seconds} of the whole job."""
        self._close(self._clock())
        self._current = None
        return dict(self.durations)

    def _close(self, now: float) -> None:
        if self._current is not None:
            key, started = self._current
            self.durations[key] = self.durations.get(key, 0.0) + (now - started)
