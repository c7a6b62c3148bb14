"""One study through the HTTP API at the speed the benchmark reports for the default path.

Starts `medlens serve` (its own data folder) with google/medgemma-4b-it pointed at the
benchmark's random-weight checkpoint (exact shapes; `.cache/bench-models`, built by
benchmarks/run.py) and the tiny test encoder (the random MedSigLIP-448 folder has no text
tower for zero-shot labels), report length capped at --new-tokens (random weights never
stop on their own), no configuration otherwise: the server picks its default CPU path.
Uploads one NIH chest X-ray (cold: includes loading), then another (warm), polls each
job to the end, and reads the stage times the server records (<data>/stage-times.json).

    python benchmarks/server_study.py [--new-tokens 200] [--out benchmarks/results]

Writes <out>/server-study.json and prints the figures next to the benchmark's own
end-to-end median for the same path (cpu-full.json's `ours`, when present).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict[str, Any]:
    for _ in range(30):
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # the API's rate limit: wait as it says
            if exc.code != 429:
                raise
            time.sleep(float(exc.headers.get("Retry-After") or 2))
    raise SystemExit(f"{url}: still rate limited")


def _upload(base: str, image: Path) -> dict[str, Any]:
    boundary = "medlens-bench"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.png\""
            f"\r\nContent-Type: image/png\r\n\r\n").encode() + image.read_bytes() + (
        f"\r\n--{boundary}--\r\n").encode()
    req = urllib.request.Request(f"{base}/v1/studies", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"upload refused ({exc.code}): {exc.read().decode()[:500]}") from None


def _study(base: str, image: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    made = _upload(base, image)
    job = made["job"]
    while job["status"] not in ("done", "failed"):
        time.sleep(2)  # well inside the API's rate limit
        job = _get(f"{base}/v1/jobs/{job['id']}")
    if job["status"] != "done":
        raise SystemExit(f"job failed: {job.get('error')}")
    took = time.perf_counter() - t0
    interp = _get(f"{base}/v1/studies/{made['id']}/interpretation")
    return {"upload_to_done_s": took, "job": job["id"],
            "models": {k: (interp.get("provenance") or {}).get(k)
                       for k in ("generator", "encoder")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--shape", default="medgemma-4b", help="benchmarks/shapes.py name")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    import shapes

    checkpoint = shapes.cached_model_dir(args.shape)
    shared = Path(os.environ.get("MEDLENS_SHARED_DATA", REPO.parent / "shared" / "data"))
    images = sorted((shared / "cxr" / "nih_cxr14_sample" / "images").glob("*.png"))[:2]
    data = Path(tempfile.mkdtemp(prefix="medlens-server-study-"))
    from medlens.config import Settings
    from medlens.models.testmodels import ensure_test_models

    ensure_test_models(Settings(data_dir=data), realtext=False)  # the tiny encoder
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", MEDLENS_DATA_DIR=str(data),
               MEDLENS_MAX_NEW_TOKENS=str(args.new_tokens),
               MEDLENS_ENCODER="medlens/test-medsiglip",
               MEDLENS_MODELS=json.dumps([{"id": "google/medgemma-4b-it",
                                           "source": f"path:{checkpoint}"}]))
    env.pop("MEDLENS_QUANTIZE", None)  # the server's own default path
    log = open(data / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "medlens"), "serve", "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                _get(f"{base}/healthz")
                break
            except OSError:
                time.sleep(0.5)
        cold = _study(base, images[0])
        warm = _study(base, images[1])
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    start = next((ln for ln in (data / "serve.log").read_text().splitlines()
                  if ln.startswith("Report model:")), "")
    stages = json.loads((data / "stage-times.json").read_text())
    bench = REPO / "benchmarks" / "results" / "cpu-full.json"
    ours = None
    if bench.is_file():
        ours = json.loads(bench.read_text())["results"]["medgemma"]["ours"]["median"]
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": "python benchmarks/server_study.py " + " ".join(sys.argv[1:]),
              "new_tokens": args.new_tokens, "server_path": start, "cold": cold,
              "warm": warm, "stage_times_s": stages,
              "benchmark_ours_end_to_end_s": ours and ours["end_to_end_s"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "server-study.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
