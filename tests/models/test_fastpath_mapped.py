"""Checkpoint pages leave RSS once quantized (madvise on memory-mapped safetensors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medlens.models.fastpath import mapped

torch = pytest.importorskip("torch")
LINUX = Path("/proc/self/maps").is_file()
PAGE = mapped.PAGE


def test_parse_maps_keeps_checkpoint_file_mappings_only() -> None:
    text = (
        "7fe096c00000-7fe2975dc000 rw-p 00000000 fe:00 161 /m/model.safetensors\n"
        "7fe4a4722000-7fe4a475e000 r--p 00000000 fe:00 530 /v/_safetensors_rust.abi3.so\n"
        "7fe4a5000000-7fe4a5001000 r--s 00000000 fe:00 162 /m/model-00002-of-00002.safetensors\n"
        "7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]\n"
        "7ffd3000-7ffd4000 rw-p 00000000 00:00 0\n"
    )
    found = mapped.parse_maps(text)
    assert [(m.start, m.end, Path(m.path).name) for m in found] == [
        (0x7FE096C00000, 0x7FE2975DC000, "model.safetensors"),
        (0x7FE4A5000000, 0x7FE4A5001000, "model-00002-of-00002.safetensors"),
    ]


def _mapping_rss_kb(path: Path) -> int:
    """Resident kB of this process's mapping(s) of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and ":" in head[3]:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


@pytest.mark.skipif(not LINUX, reason="needs /proc (Linux)")
def test_release_pages_drops_resident_pages_and_keeps_the_data(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    n = 8 * 1024 * 1024
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.arange(n, dtype=torch.int32).to(torch.uint8)}, str(path))
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=path.stat().st_size)
    whole = torch.empty(0, dtype=torch.uint8).set_(storage)
    offset = PAGE + 100  # unaligned on purpose, like safetensors data
    t = whole[offset : offset + 4 * 1024 * 1024]
    expected = t.clone()
    assert int(t.sum()) == int(expected.sum())  # touch every page
    before = _mapping_rss_kb(path)
    advised = mapped.release_pages(t)
    after = _mapping_rss_kb(path)
    # Whole pages inside the tensor only: the partial first and last pages stay.
    first = (t.data_ptr() + PAGE - 1) // PAGE * PAGE
    last = (t.data_ptr() + t.numel()) // PAGE * PAGE
    assert advised == last - first
    assert before - after >= advised // 1024 - 8  # kB; tolerance for readahead rounding
    assert torch.equal(t, expected)  # faults back in from the file, unchanged


def test_release_pages_never_touches_ordinary_memory() -> None:
    t = torch.full((4 * 1024 * 1024,), 7, dtype=torch.uint8)
    assert mapped.release_pages(t) == 0
    assert int(t.min()) == 7 and int(t.max()) == 7  # DONTNEED here would have zeroed it
    assert mapped.release_pages(t[::2]) == 0  # not contiguous: left alone


PEAK_SCRIPT = r"""
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
from transformers import AutoModelForCausalLM
from medlens.models.fastpath import apply_fastpath, mapped

if sys.argv[2] == "off":
    mapped._madvise = lambda: None  # release_pages then does nothing

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
base = status("VmRSS:")
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16)
apply_fastpath(model, {"quantize": "int8"})
print(json.dumps({"peak": status("VmHWM:") - base, "after": status("VmRSS:") - base}))
"""


@pytest.mark.skipif(not LINUX, reason="needs /proc (Linux)")
def test_int8_load_peak_stays_near_the_int8_size(tmp_path: Path) -> None:
    """A bf16 checkpoint quantized while loading: peak RSS ~ int8 model, not bf16 + int8."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=16384, hidden_size=1024, intermediate_size=4096, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=256,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "m")
    size = (tmp_path / "m" / "model.safetensors").stat().st_size
    del model
    assert size > 200e6

    def peak(mode: str) -> dict[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, str(tmp_path / "m"), mode],
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    on, off = peak("on"), peak("off")
    # Without releasing pages the whole bf16 file stays resident on top of the int8
    # weights; with it, the peak drops by about the file's size (interpreter and loader
    # overheads, ~150 MB here, are in both figures).
    assert off["peak"] > 1.2 * size, off
    assert off["peak"] - on["peak"] > 0.5 * size, (size, on, off)
    # And quantizing adds little on top of the result (small, reused fp32 workspace).
    assert on["peak"] - on["after"] < 0.4 * size, (size, on)
