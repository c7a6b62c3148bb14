"""GGUF files of the cached random-weight MedGemma-4B (exact shapes) for the llama.cpp rows.

The benchmark's transformers checkpoint (benchmarks/shapes.py) goes through llama.cpp's
own converter (convert_hf_to_gguf.py, vendored in the llama-cpp-python sdist that
scripts/build-llamacpp.sh unpacks into the wheel cache):

- language model: BF16 GGUF, then Q8_0 and Q4_K_M with llama.cpp's quantizer
  (`llama_model_quantize` through llama-cpp-python, the same code as `llama-quantize`);
- vision projector (mmproj): F16 from a copy holding only the vision tensors, renamed
  `vision_tower.vision_model.*` (transformers 5 saves `vision_tower.*`, which llama.cpp's
  tensor map does not know; the same workaround as tests/remote/test_gguf_vision.py).

Files are cached beside the checkpoint (<model dir>/gguf/); a file is only written once.

    python benchmarks/gguf_build.py [--model medgemma-4b] [--types q8_0 q4_k_m]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

LLAMA_CPP_VERSION = "0.3.36"
# llama.cpp's file types (llama.h: enum llama_ftype).
FTYPES = {"q8_0": 7, "q4_k_m": 15}


def converter() -> Path:
    explicit = os.environ.get("MEDLENS_LLAMACPP_CONVERT")
    cache = Path(os.environ.get("MEDLENS_WHEEL_CACHE", Path.home() / ".cache/medlens/wheels"))
    folder = Path(explicit) if explicit else cache / f"llama.cpp-convert-{LLAMA_CPP_VERSION}"
    script = folder / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise SystemExit(f"llama.cpp converter not found at {script}: run "
                         "scripts/build-llamacpp.sh (it unpacks the converter there)")
    return script


def _convert(model_dir: Path, out: Path, *extra: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    tmp = out.with_suffix(".part")
    proc = subprocess.run(
        [sys.executable, str(converter()), str(model_dir), "--outfile", str(tmp), *extra],
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0 or not tmp.is_file():
        raise SystemExit(f"convert_hf_to_gguf failed for {model_dir}:\n{proc.stderr[-3000:]}")
    tmp.rename(out)


def _vision_only_copy(src: Path, dst: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, dst / f.name)
    tensors = {}
    for shard in sorted(src.glob("*.safetensors")):
        with safe_open(shard, framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                if name.startswith("vision_tower.") and not name.startswith(
                    "vision_tower.vision_model."
                ):
                    new = "vision_tower.vision_model." + name[len("vision_tower."):]
                    tensors[new] = fh.get_tensor(name)
                elif name.startswith("multi_modal_projector."):
                    tensors[name] = fh.get_tensor(name)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})


def _quantize(src: Path, out: Path, ftype: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 2
    tmp = out.with_suffix(".part")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0 or not tmp.is_file():
        raise SystemExit(f"llama_model_quantize({src.name} -> {out.name}) returned {rc}")
    tmp.rename(out)


def build(model_dir: Path, types: list[str], log: Any = print) -> dict[str, Path]:
    """{"bf16"?, "q8_0", "q4_k_m", "mmproj"} -> GGUF path (built once, then reused)."""
    folder = model_dir / "gguf"
    folder.mkdir(exist_ok=True)
    out: dict[str, Path] = {}
    mmproj = folder / "mmproj-f16.gguf"
    if not mmproj.is_file():
        t = time.perf_counter()
        work = folder / "vision-only"
        _vision_only_copy(model_dir, work)
        _convert(work, mmproj, "--mmproj", "--outtype", "f16")
        shutil.rmtree(work)
        log(f"gguf: mmproj F16 in {time.perf_counter() - t:.0f} s")
    out["mmproj"] = mmproj
    wanted = {t: folder / f"model-{t.upper()}.gguf" for t in types}
    if all(p.is_file() for p in wanted.values()):
        return out | wanted
    bf16 = folder / "model-BF16.gguf"
    if not bf16.is_file():
        t = time.perf_counter()
        _convert(model_dir, bf16, "--outtype", "bf16")
        log(f"gguf: BF16 language model in {time.perf_counter() - t:.0f} s")
    for kind, path in wanted.items():
        if not path.is_file():
            t = time.perf_counter()
            _quantize(bf16, path, FTYPES[kind])
            log(f"gguf: {kind.upper()} in {time.perf_counter() - t:.0f} s "
                f"({path.stat().st_size / 1e9:.2f} GB)")
    bf16.unlink()  # 8.6 GB on disk, no longer needed once the quantized files exist
    return out | wanted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="medgemma-4b")
    ap.add_argument("--types", nargs="+", default=list(FTYPES), choices=list(FTYPES))
    args = ap.parse_args()
    import shapes

    for kind, path in build(shapes.cached_model_dir(args.model), args.types).items():
        print(f"{kind}: {path} ({path.stat().st_size / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()
