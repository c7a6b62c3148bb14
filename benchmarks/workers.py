"""Benchmark workers: one process per (model, variant), commanded over stdin/stdout.

Each worker loads its model once, then answers `run` commands with one measurement, so
the orchestrator (benchmarks/run.py) can interleave baseline and ours run by run while
each process's peak RSS stays its own. Protocol: one JSON object per line on stdin; each
answer is one stdout line starting with MARK (libraries may print other lines).

Variants:
- medgemma/baseline: plain transformers, `generate` in bf16 with default settings.
- medgemma/ours: MedLens's TransformersGenerator (manual decode loop, image-feature cache)
  with the fast path (weight-only int8/int4 decoder) at load time.
- medsiglip/baseline: `SiglipModel.get_image_features` in bf16.
- medsiglip/ours: MedLens's TransformersEncoder (content-hash embedding cache), with the
  image tower's attention on MedLens's compiled kernel, as load_encoder sets it up on CPU.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

MARK = "@@BENCH@@ "
# The follow-up question (~30 tokens, the follow-up shape).
FOLLOWUP = ('Is there a pleural effusion on the left or right side, and if so, is it small, m'
            'oderate or large compared with the prior study?')
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

_CLINICAL = (
    "Clinical history: 67-year-old man, former smoker, three days of productive cough, fever "
    "38.4 C, oxygen saturation 91 percent on room air, crackles at the right base. Known "
    "hypertension and type 2 diabetes; no prior chest imaging available for comparison. "
    "Question from the emergency physician: is there consolidation, pleural effusion, "
    "pneumothorax or cardiomegaly, and where are the lines and tubes? "
)


def rss_peak_mb() -> float:
    """VmHWM of this process (the kernel's high-water mark), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_rss_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5), so a peak excludes loading."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def prompt_text(tokenizer: Any, n_tokens: int) -> str:
    """Clinical-style text of exactly `n_tokens` tokens (repeated, then cut)."""
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids += tokenizer(_CLINICAL, add_special_tokens=False)["input_ids"]
    return str(tokenizer.decode(ids[:n_tokens]))


def image_bytes(quick: bool) -> tuple[bytes, str]:
    """A real chest X-ray from ../shared/data when present, else a synthetic PNG."""
    shared = Path(os.environ.get("MEDLENS_SHARED_DATA", REPO.parent / "shared" / "data"))
    files = sorted((shared / "cxr" / "nih_cxr14_sample" / "images").glob("*.png"))
    if files:
        return files[0].read_bytes(), files[0].name
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    size = 256 if quick else 1024
    img = Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), "L")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), "synthetic.png"


# --- MedGemma ---------------------------------------------------------------------------
class _FirstTokenTimer:
    """A generate() streamer: records when the prompt was taken and each token arrived."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        self.times.append(time.perf_counter())


class MedGemmaBaseline:
    def __init__(self, spec: dict[str, Any]) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.spec = spec
        self.model = AutoModelForImageTextToText.from_pretrained(
            spec["path"], dtype=torch.bfloat16
        ).eval()
        self.processor = AutoProcessor.from_pretrained(spec["path"])
        self.text = prompt_text(self.processor.tokenizer, spec["prompt_tokens"])
        self.data, self.name = image_bytes(spec["quick"])
        self._vision = 0.0
        self._t: list[float] = []
        inner = self.model.model
        for mod in (inner.vision_tower, inner.multi_modal_projector):
            mod.register_forward_pre_hook(lambda *_: self._t.append(time.perf_counter()))
            mod.register_forward_hook(lambda *_: self._t.append(time.perf_counter()))

    def _inputs(self) -> Any:
        import io

        from PIL import Image

        image = Image.open(io.BytesIO(self.data)).convert("RGB")
        messages = [
            {"role": "system",
             "content": [{"type": "text", "text": "You are an expert radiologist."}]},
            {"role": "user", "content": [{"type": "text", "text": self.text},
                                         {"type": "image", "image": image}]},
        ]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt",
        ).to(self.model.device, dtype=self.model.dtype)

    def run(self, new_tokens: int) -> dict[str, Any]:
        import torch

        self._t.clear()
        t0 = time.perf_counter()
        inputs = self._inputs()
        t_pre = time.perf_counter()
        timer = _FirstTokenTimer()
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                do_sample=False, streamer=timer,
            )
        t_end = time.perf_counter()
        n_new = int(out.shape[1] - inputs["input_ids"].shape[1])
        # streamer.put: prompt, then one call per new token; end() after the last.
        first = timer.times[1]
        vision = sum(b - a for a, b in zip(self._t[::2], self._t[1::2], strict=False))
        decode_s = timer.times[-2] - first if n_new > 1 else 0.0
        return {
            "ingest_preprocess_s": t_pre - t0,
            "vision_s": vision,
            "prefill_s": first - t_pre - vision,
            "vision_prefill_s": first - t_pre,
            "ttft_s": first - t0,
            "decode_tokens_per_s": (n_new - 1) / decode_s if decode_s > 0 else None,
            "end_to_end_s": t_end - t0,
            "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "new_tokens": n_new,
        }

    def followup(self) -> dict[str, Any]:
        # Plain transformers keeps nothing between calls: a follow-up re-encodes the image.
        r = self.run(1)
        return {"followup_ttft_s": r["ttft_s"], "followup_images_encoded": 1}


class MedGemmaOurs:
    def __init__(self, spec: dict[str, Any]) -> None:
        os.environ["MEDLENS_QUANTIZE"] = spec.get("quantize", "int8")
        from dataclasses import replace

        from medlens.models.backends.transformers_generator import load_generator
        from medlens.models.registry import load_registry, record_from_dict

        record = record_from_dict({
            "id": f"bench/{Path(spec['path']).name}", "kind": "generator",
            "source": f"path:{spec['path']}", "revision": "random-weights",
            "modalities": ["text", "image"], "is_test": True,
        })
        self.spec = spec
        self.gen = load_generator(record, Path(spec["path"]), device="cpu", dtype="bfloat16")
        self.model = self.gen.model
        base = load_registry().get("google/medgemma-4b-it").preprocess
        assert base is not None
        self.preprocess_spec = replace(base, size=self.model.config.vision_config.image_size)
        self.text = prompt_text(self.gen.tokenizer, spec["prompt_tokens"])
        self.data, self.name = image_bytes(spec["quick"])
        self._history: list[Any] = []

    def _messages(self) -> list[Any]:
        from medlens.imaging.ingest import ingest
        from medlens.imaging.preprocess import preprocess
        from medlens.models.protocols import ChatMessage, ImagePart, TextPart

        img = ingest(self.data, name=self.name)
        part = ImagePart(preprocess(img.image, self.preprocess_spec), key=img.pixel_sha256)
        return [
            ChatMessage("system", (TextPart("You are an expert radiologist."),)),
            ChatMessage("user", (TextPart(self.text), part)),
        ]

    def run(self, new_tokens: int) -> dict[str, Any]:
        from medlens.models.protocols import GenerationConfig, GenerationStats

        self.gen.clear_image_cache()  # every study run encodes its image
        t0 = time.perf_counter()
        messages = self._messages()
        t_pre = time.perf_counter()
        stats = GenerationStats()
        cfg = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        answer = "".join(self.gen.stream(messages, cfg, stats))
        t_end = time.perf_counter()
        tm = stats.timings
        self._history = [*messages, _assistant(answer)]
        return {
            "ingest_preprocess_s": t_pre - t0 + tm.get("tokenize", 0.0),
            "vision_s": tm["vision_encode"],
            "prefill_s": tm["prefill"],
            "vision_prefill_s": tm["vision_encode"] + tm["prefill"],
            "ttft_s": t_pre - t0 + tm["first_token"],
            "decode_tokens_per_s": tm.get("decode_tokens_per_s"),
            "end_to_end_s": t_end - t0,
            "prompt_tokens": stats.prompt_tokens,
            "new_tokens": stats.output_tokens,
        }

    def followup(self) -> dict[str, Any]:
        """A second question about the same study: the image encoding comes from the cache."""
        return ask_followup(self.gen, self._history)


def ask_followup(gen: Any, history: list[Any]) -> dict[str, Any]:
    """Time to the first token of FOLLOWUP after `history`, and images encoded for it."""
    from medlens.models.protocols import ChatMessage, GenerationConfig, GenerationStats

    messages = [*history, ChatMessage.text("user", FOLLOWUP)]
    stats = GenerationStats()
    t0 = time.perf_counter()
    "".join(gen.stream(messages, GenerationConfig(max_new_tokens=1), stats))
    return {"followup_ttft_s": time.perf_counter() - t0,
            "followup_images_encoded": stats.images_encoded}


def _assistant(text: str) -> Any:
    from medlens.models.protocols import ChatMessage

    return ChatMessage.text("assistant", text or "No acute findings.")


# --- MedSigLIP --------------------------------------------------------------------------
class _SiglipBase:
    def __init__(self, spec: dict[str, Any]) -> None:
        import io

        import torch
        from PIL import Image
        from transformers import SiglipImageProcessor, SiglipModel

        self.spec = spec
        self.model = SiglipModel.from_pretrained(spec["path"], dtype=torch.bfloat16).eval()
        self.image_processor = SiglipImageProcessor.from_pretrained(spec["path"])
        self.data, self.name = image_bytes(spec["quick"])
        self.image = Image.open(io.BytesIO(self.data)).convert("RGB")


class MedSiglipBaseline(_SiglipBase):
    def run(self, batch: int) -> dict[str, Any]:
        import torch

        t0 = time.perf_counter()
        pixel = self.image_processor(images=[self.image] * batch, return_tensors="pt")[
            "pixel_values"
        ].to(torch.bfloat16)
        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixel)
        getattr(out, "pooler_output", out).float()
        dt = time.perf_counter() - t0
        return {"seconds": dt, "images_per_s": batch / dt, "repeat_scoring_s": dt}


class MedSiglipOurs(_SiglipBase):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        from types import SimpleNamespace

        from medlens.models.backends.torch_runtime import configure_threads
        from medlens.models.backends.transformers_encoder import TransformersEncoder
        from medlens.models.fastpath import fast_vision_attention
        from medlens.models.protocols import BackendInfo

        configure_threads()
        fast_vision_attention(self.model)  # what load_encoder does on CPU
        info = BackendInfo(model_id="bench/medsiglip", backend="transformers",
                           source=f"path:{spec['path']}", revision="random-weights",
                           weights_hash="", dtype="bfloat16", device="cpu", is_test=True)
        # Images only: the benchmark model folder has no text tokenizer.
        self.enc = TransformersEncoder(
            self.model, SimpleNamespace(image_processor=self.image_processor), info
        )

    def run(self, batch: int) -> dict[str, Any]:
        from medlens.models.protocols import ImagePart

        self.enc.clear_cache()
        # Distinct keys: a batch of 8 different studies (same pixels, same cost).
        parts = [ImagePart(self.image, key=f"{self.name}-{i}") for i in range(batch)]
        t0 = time.perf_counter()
        self.enc.embed_images(parts)
        dt = time.perf_counter() - t0
        t1 = time.perf_counter()
        self.enc.embed_images(parts)  # scoring the same images again: cache hits
        return {"seconds": dt, "images_per_s": batch / dt,
                "repeat_scoring_s": time.perf_counter() - t1}


VARIANTS = {
    ("medgemma", "baseline"): MedGemmaBaseline,
    ("medgemma", "ours"): MedGemmaOurs,
    ("medsiglip", "baseline"): MedSiglipBaseline,
    ("medsiglip", "ours"): MedSiglipOurs,
}


def _info(worker: Any) -> dict[str, Any]:
    from limits import decoder_weight_bytes

    model = worker.model
    info: dict[str, Any] = {"threads": __import__("torch").get_num_threads()}
    if model is None:  # llama.cpp: the GGUF file holds the decoder (tied head counted once)
        return info | {"decoder_weight_bytes": worker.weight_bytes, "engine": "llama.cpp"}
    if hasattr(model, "get_output_embeddings") and hasattr(model.config, "text_config"):
        info["decoder_weight_bytes"] = decoder_weight_bytes(model)
        report = getattr(model, "medlens_fastpath", None)
        info["fastpath"] = report.__dict__ if report is not None else None
        info["attn_implementation"] = model.config._attn_implementation
    return info


def serve(spec: dict[str, Any]) -> None:
    from medlens.models.backends.torch_runtime import configure_threads

    configure_threads()
    t0 = time.perf_counter()
    if spec["variant"] == "gguf":
        from workers_gguf import MedGemmaGguf

        worker: Any = MedGemmaGguf(spec)
    else:
        worker = VARIANTS[(spec["model"], spec["variant"])](spec)
    ready = {"load_s": time.perf_counter() - t0, "load_peak_rss_mb": rss_peak_mb(),
             **_info(worker)}
    ready["rss_after_load_mb"] = rss_now_mb()
    ready["peak_reset"] = reset_rss_peak()
    _say(ready)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        try:
            if cmd["op"] == "features":
                from features import image_features

                out = image_features(worker)
            else:
                out = worker.run(cmd["arg"]) if cmd["op"] == "run" else worker.followup()
            out["peak_rss_mb"] = rss_peak_mb()
        except Exception as exc:  # reported to the orchestrator, which stops the run
            out = {"error": f"{type(exc).__name__}: {exc}"}
        _say(out)


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
