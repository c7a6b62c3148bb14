"""Benchmark worker for the llama.cpp rows: the same study through MedLens's GGUF backend.

medgemma/gguf-<type>: `medlens.models.backends.llamacpp` (llama-cpp-python, libmtmd for the
image) on GGUF files converted from the same random-weight checkpoint as the transformers
rows (benchmarks/gguf_build.py): the language model in Q8_0 or Q4_K_M, the vision
projector (mmproj) in F16. Same image, same 200-token clinical text, same fixed output
length (end-of-turn banned until then), greedy.

What llama.cpp reports and what it cannot separate:
- vision encode + prefill is one figure: llama.cpp's prompt-eval time (its perf counters
  run from the first prompt batch to the end of the prompt, and libmtmd encodes the image
  (mmproj's SigLIP tower + projector) between the text batches), so the two cannot be
  told apart; time to first token also holds MedLens's PNG data URL of the image and
  llama-cpp-python's templating;
- follow-up: llama-cpp-python's libmtmd handler clears the KV cache on every call, so a
  follow-up question re-encodes the image and re-evaluates the whole conversation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from workers import _assistant, ask_followup, image_bytes, prompt_text


class MedGemmaGguf:
    def __init__(self, spec: dict[str, Any]) -> None:
        import os

        from medlens.models.backends.llamacpp import load_generator
        from medlens.models.registry import ModelRecord

        self.spec = spec
        model, mmproj = Path(spec["gguf"]), Path(spec["mmproj"])
        threads = spec.get("threads") or os.cpu_count() or 2
        self.gen = load_generator(ModelRecord(
            id=f"bench/{model.name}", kind="generator", context_length=8192,
            source=f"gguf:{model}?mmproj={mmproj}&n_threads={threads}&n_ctx=2048",
            modalities=("text", "image"), is_test=True))
        self.model = None  # no torch module: _info reports the GGUF file instead
        self.weight_bytes = model.stat().st_size
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(spec["path"])
        self.text = prompt_text(tok, spec["prompt_tokens"])
        self.data, self.name = image_bytes(spec["quick"])
        self._history: list[Any] = []

    def _messages(self) -> list[Any]:
        from dataclasses import replace

        from medlens.imaging.ingest import ingest
        from medlens.imaging.preprocess import preprocess
        from medlens.models.protocols import ChatMessage, ImagePart, TextPart
        from medlens.models.registry import load_registry

        base = load_registry().get("google/medgemma-4b-it").preprocess
        img = ingest(self.data, name=self.name)
        size = 896 if not self.spec["quick"] else 64
        part = ImagePart(preprocess(img.image, replace(base, size=size)), key=img.pixel_sha256)
        return [
            ChatMessage("system", (TextPart("You are an expert radiologist."),)),
            ChatMessage("user", (TextPart(self.text), part)),
        ]

    def run(self, new_tokens: int) -> dict[str, Any]:
        from medlens.models.backends.openai_wire import DataUrlCache
        from medlens.models.protocols import GenerationConfig, GenerationStats

        self.gen._images = DataUrlCache()  # every study run converts its image again
        t0 = time.perf_counter()
        messages = self._messages()
        t_pre = time.perf_counter()
        stats = GenerationStats()
        cfg = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        answer = "".join(self.gen.stream(messages, cfg, stats))
        t_end = time.perf_counter()
        tm = stats.timings
        self._history = [*messages, _assistant(answer)]
        first = tm["first_token"]
        return {
            "ingest_preprocess_s": t_pre - t0,
            "vision_s": None,  # inside llama.cpp's prompt evaluation (see the docstring)
            "prefill_s": None,
            "vision_prefill_s": tm["prefill"],
            "ttft_s": t_pre - t0 + first,
            "decode_tokens_per_s": tm.get("decode_tokens_per_s"),
            "end_to_end_s": t_end - t0,
            "prompt_tokens": stats.prompt_tokens,
            "new_tokens": stats.output_tokens,
        }

    def followup(self) -> dict[str, Any]:
        return ask_followup(self.gen, self._history)
