"""The orchestrator's side of a benchmark worker process, and the feature comparison."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workers import MARK

REPO = Path(__file__).resolve().parents[1]


class Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "workers.py"), json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                out = json.loads(line[len(MARK):])
                if "error" in out:
                    raise RuntimeError(f"{self.spec['model']}/{self.spec['variant']}: "
                                       f"{out['error']}")
                return out
        raise RuntimeError(f"worker {self.spec['model']}/{self.spec['variant']} exited "
                           f"(code {self.proc.wait()})")

    def ask(self, op: str, arg: Any = None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "arg": arg}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask_quit()
            finally:
                self.proc.wait(timeout=120)

    def ask_quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.close()


def cosine(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Row-wise cosine of two workers' image features (min and mean over tokens/images)."""
    import base64

    import numpy as np

    x, y = (np.frombuffer(base64.b64decode(f["features_b64"]), dtype=np.float16)
            .astype(np.float64).reshape(f["shape"]) for f in (a, b))
    cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    return {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)}


def start_worker(variant: str, spec: dict[str, Any], loads: dict[str, list], log: Any) -> Worker:
    t = time.perf_counter()
    w = Worker(spec)
    loads[variant].append(w.ready)
    log(f"medgemma/{variant}: loaded in {time.perf_counter() - t:.1f} s")
    return w
