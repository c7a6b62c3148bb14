"""Calibrate and measure the model-free non-radiograph check (imaging.radiograph_stats).

    python benchmarks/radiograph_gate_calibration.py [--data ../shared/data] [--write]

Fits the one-class model on the calibration half of the shared radiographs (NIH CXR14
sample, COVID collection, CR/DX DICOMs; split by a hash of the file name) and prints the
false-accept rate on the generated non-radiographs and the false-reject rate per
collection, for the calibration half, the held-out half and all. `--write` stores the
model as src/medlens/imaging/data/radiograph_model.json (what the gate uses). Needs
scikit-image (the dev extra) for the non-radiograph photos.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "imaging"))


def main() -> int:
    from radiograph_check_data import COLLECTIONS, nonradiograph_images, radiographs

    from medlens.imaging.radiograph_stats import MODEL_PATH, check_radiograph, fit_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--write", action="store_true", help="store the fitted model")
    args = parser.parse_args()
    pos = [(c, n, s, img.image) for c, n, s, img in radiographs(args.data)]
    neg = list(nonradiograph_images())
    model = fit_model([im for _, _, s, im in pos if s == "calibration"])
    print(f"{len(pos)} radiographs, {len(neg)} non-radiographs; fitted on {model.n_fit}")
    for split in ("calibration", "held-out", "all"):
        n = [(name, im) for name, s, im in neg if split in ("all", s)]
        fa = [name for name, im in n if check_radiograph(im, model).looks_like_radiograph]
        print(f"[{split}] false accepts {len(fa)}/{len(n)} = {len(fa) / len(n):.1%} {fa}")
        for coll in COLLECTIONS:
            p = [(nm, im) for c, nm, s, im in pos if c == coll and split in ("all", s)]
            fr = [nm for nm, im in p if not check_radiograph(im, model).looks_like_radiograph]
            rate = f"{len(fr) / len(p):.1%}" if p else "-"
            print(f"  {coll}: false rejects {len(fr)}/{len(p)} = {rate} {fr}")
    if args.write:
        MODEL_PATH.write_text(json.dumps(model.to_json(), indent=1) + "\n")
        print(f"wrote {MODEL_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
