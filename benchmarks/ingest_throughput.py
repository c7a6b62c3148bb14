"""Ingest throughput: decode + validate + preprocess (images/s) over the shared CXRs.

    python benchmarks/ingest_throughput.py [--model google/medgemma-4b-it] [--repeat 2]
        [--data ../shared/data] [--dicom]

Single process, single thread (what one server worker does). Prints one line per stage
and the overall images/s; `--dicom` adds the chest radiograph DICOM (JPEG 2000) alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--model",
        default="google/medgemma-4b-it",
        help="Registry id whose preprocess spec is used.",
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dicom", action="store_true", help="Also time RG1_J2KI.dcm.")
    args = parser.parse_args()

    from medlens.imaging.gate import gate_chest_xray
    from medlens.imaging.ingest import ingest
    from medlens.imaging.preprocess import preprocess
    from medlens.models.registry import load_registry

    spec = load_registry().get(args.model).preprocess
    if spec is None:
        print(f"{args.model} has no preprocess spec", file=sys.stderr)
        return 2
    files = sorted((args.data / "cxr").glob("*/images/*"))
    if not files:
        print(f"no images under {args.data / 'cxr'}", file=sys.stderr)
        return 2
    blobs = [f.read_bytes() for f in files]  # disk reads are not what we measure
    mb = sum(len(b) for b in blobs) / 2**20
    t_ingest, t_gate, t_pre, rates = 0.0, 0.0, 0.0, []
    for _ in range(args.repeat):
        start = time.perf_counter()
        for data, f in zip(blobs, files, strict=True):
            t0 = time.perf_counter()
            img = ingest(data, name=f.name)
            t1 = time.perf_counter()
            gate_chest_xray(img)
            t2 = time.perf_counter()
            preprocess(img.image, spec)
            t3 = time.perf_counter()
            t_ingest, t_gate, t_pre = t_ingest + t1 - t0, t_gate + t2 - t1, t_pre + t3 - t2
        rates.append(len(blobs) / (time.perf_counter() - start))
    n = len(blobs) * args.repeat
    print(
        f"images: {len(blobs)} ({mb:.1f} MiB PNG/JPEG) x {args.repeat} passes; "
        f"preprocess spec: {args.model} ({spec.size} px)"
    )
    print(f"decode+validate (ingest): {1000 * t_ingest / n:7.2f} ms/image")
    print(f"gate (statistics):        {1000 * t_gate / n:7.2f} ms/image")
    print(f"preprocess:               {1000 * t_pre / n:7.2f} ms/image")
    print(
        f"throughput: {statistics.median(rates):.1f} images/s "
        f"(median of {args.repeat} passes; min {min(rates):.1f}, max {max(rates):.1f})"
    )
    if args.dicom:
        path = args.data / "dicom" / "RG1_J2KI.dcm"
        data = path.read_bytes()
        start = time.perf_counter()
        for _ in range(args.repeat):
            preprocess(ingest(data, name=path.name).image, spec)
        per = (time.perf_counter() - start) / args.repeat
        print(
            f"RG1_J2KI.dcm (1841x1955 JPEG 2000 CR): {1000 * per:.0f} ms/image "
            f"({1 / per:.1f} images/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
