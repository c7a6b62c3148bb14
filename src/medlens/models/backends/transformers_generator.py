"""Generator backend on Hugging Face transformers: Gemma 3 VLMs and text-only Gemma 3.

A manual decoding loop (not `generate`) so that: image features are computed by us and
cached by ImagePart.key (follow-up turns never re-run the vision tower), every stage is
timed, text streams as it is decoded, and stop strings / min tokens are exact.
Heavy imports happen at load time only.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlens.errors import ConfigError, GenerationError
from medlens.models.backends.gemma_tokens import eos_ids, hidden_special_ids, sanitise_user_text
from medlens.models.backends.torch_runtime import (
    configure_threads,
    torch_dtype,
    transformers_info,
)
from medlens.models.backends.transformers_scoring import loglikelihood, pick_token
from medlens.models.chat_template import GEMMA3_CHAT_TEMPLATE
from medlens.models.protocols import (
    BackendInfo,
    ChatMessage,
    GenerationConfig,
    GenerationStats,
    ImagePart,
    StreamingGenerator,
    TextPart,
)
from medlens.models.stream_text import IncrementalDetokenizer, StopStringBuffer
from medlens.models.thinking import ThinkingFilter

IMAGE_CACHE_SIZE = 32  # encoded images kept per model (follow-up questions reuse them)


class TransformersGenerator(StreamingGenerator):
    """Implements protocols.Generator and protocols.LoglikelihoodScorer."""

    def __init__(self, model: Any, processor: Any, info: BackendInfo) -> None:
        import torch

        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.info = info
        self.device = torch.device(info.device)
        self.multimodal = hasattr(model.config, "vision_config") and hasattr(
            model, "get_image_features"
        )
        if self.tokenizer.chat_template is None:
            self.tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
        self._image_cache: OrderedDict[str, Any] = OrderedDict()
        self._prefix: Any = None  # fastpath.prefix.Prefix: the last conversation's KV cache
        self.last_output_ids: list[int] = []
        self._lock = threading.Lock()  # one generation at a time per loaded model
        self.eos_ids = eos_ids(model, self.tokenizer)
        vocab_rows = model.get_output_embeddings().weight.shape[0]
        # Rows beyond the tokenizer (MedGemma pads its vocab to 262208) and the image
        # soft token are never valid outputs.
        banned = list(range(len(self.tokenizer), vocab_rows))
        if self.multimodal:
            banned.append(int(model.config.image_token_id))
        self._banned = torch.tensor(sorted(set(banned)), dtype=torch.long, device=self.device)
        self._skip_ids = hidden_special_ids(self.tokenizer)
        self._step = _fused_step(model, self.device)

    # --- prompt --------------------------------------------------------------
    def _chat_dicts(self, messages: Sequence[ChatMessage]) -> tuple[list[dict], list[ImagePart]]:
        out: list[dict] = []
        images: list[ImagePart] = []
        for msg in messages:
            parts: list[dict] = []
            for part in msg.content:
                if isinstance(part, ImagePart):
                    if not self.multimodal:
                        raise ConfigError(
                            f"Model {self.info.model_id!r} is text-only; it cannot take images."
                        )
                    images.append(part)
                    parts.append({"type": "image"})
                elif isinstance(part, TextPart):
                    parts.append({"type": "text", "text": sanitise_user_text(part.text)})
            out.append({"role": msg.role, "content": parts})
        return out, images

    def build_prompt(self, messages: Sequence[ChatMessage]) -> tuple[list[int], list[ImagePart]]:
        """Token ids of the templated conversation (image blocks expanded)."""
        chat, images = self._chat_dicts(messages)
        try:
            text = self.tokenizer.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja raise_exception: roles must alternate, etc.
            raise ConfigError(f"Cannot format the conversation for this model: {exc}") from exc
        if images:
            boi = self.processor.boi_token
            if text.count(boi) != len(images):
                raise GenerationError("Image placeholders do not match the images given.")
            text = text.replace(boi, self.processor.full_image_sequence)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return list(ids), images

    # --- images --------------------------------------------------------------
    def _image_features(self, images: Sequence[ImagePart], stats: GenerationStats) -> Any:
        """(n_images * tokens_per_image, hidden) features; encodes only uncached images."""
        import torch

        todo = [
            key for key in dict.fromkeys(im.key for im in images) if key not in self._image_cache
        ]
        by_key = {im.key: im for im in images}
        if todo:
            pixel = self.processor.image_processor(
                images=[by_key[k].image.convert("RGB") for k in todo], return_tensors="pt"
            )["pixel_values"].to(self.device, self.model.dtype)
            with torch.inference_mode():
                feats = self.model.get_image_features(pixel_values=pixel)
            feats = getattr(feats, "pooler_output", feats)
            for key, feat in zip(todo, feats, strict=True):
                self._image_cache[key] = feat
                while len(self._image_cache) > IMAGE_CACHE_SIZE:
                    self._image_cache.popitem(last=False)
        stats.images_encoded += len(todo)
        stats.images_cached += len(images) - len(todo)
        for im in images:
            self._image_cache.move_to_end(im.key)
        return torch.cat([self._image_cache[im.key] for im in images], dim=0)

    # --- generation ----------------------------------------------------------
    def _generate(
        self, messages: Sequence[ChatMessage], config: GenerationConfig, stats: GenerationStats
    ) -> Iterator[str]:
        with self._lock:
            yield from self._stream(messages, config, stats)

    def _stream(
        self, messages: Sequence[ChatMessage], config: GenerationConfig, stats: GenerationStats
    ) -> Iterator[str]:
        import torch

        t0 = time.perf_counter()
        clock = _Clock(t0)
        ids, images = self.build_prompt(messages)
        stats.prompt_tokens = len(ids)
        max_new = self._room(len(ids), config.max_new_tokens)
        stats.timings["tokenize"] = time.perf_counter() - t0
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        from medlens.models.fastpath import prefix

        keys = tuple(img.key for img in images)
        token = getattr(self.model.config, "image_token_id", None) if self.multimodal else None
        cache, reused = prefix.reuse(self._prefix, ids, keys, token)
        self._prefix, stats.timings["prefix_reused_tokens"] = None, float(reused)
        stats.images_cached += len(images) if reused else 0
        # A reused prefix holds the images already: nothing to encode or look up.
        kwargs = self._image_inputs(input_ids, images if not reused else (), stats)
        kept = (cache, reused, keys)  # the prefix to continue from (cache None: prefill all)
        generator = None
        if config.temperature > 0:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(config.seed if config.seed is not None else 0)
        detok = IncrementalDetokenizer(self._decode)
        stopper = StopStringBuffer(config.stop)
        thinking = ThinkingFilter()
        out_ids: list[int] = []
        stats.finish_reason = "length"
        with torch.inference_mode():
            steps = self._tokens(input_ids, kwargs, kept, max_new, config, generator, stats, clock)
            for token in steps:
                out_ids.append(token)
                stats.output_tokens = len(out_ids)
                piece, hit = stopper.feed(detok.add(token))
                piece = thinking.feed(piece)
                if piece:
                    yield piece
                if hit:
                    stats.finish_reason = "stop_string"
                    break
        if stats.finish_reason != "stop_string":
            stopper.feed(detok.finish())
            rest = thinking.feed(stopper.flush()) + thinking.flush()
        else:
            rest = thinking.flush()
        if rest:
            yield rest
        self.last_output_ids = list(out_ids)  # for tests/debugging (calls are serialised)
        clock.finish(stats)

    def _image_inputs(
        self, input_ids: Any, images: Sequence[ImagePart], stats: GenerationStats
    ) -> dict[str, Any]:
        """Prefill keyword arguments that carry the (cached) image features."""
        if not images:
            stats.timings["vision_encode"] = 0.0
            return {}
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        t = time.perf_counter()
        feats = self._image_features(images, stats)
        stats.timings["vision_encode"] = time.perf_counter() - t
        return {
            "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=feats[None])},
            # Gemma 3 attends bidirectionally within each image block during prefill.
            "token_type_ids": (input_ids == self.model.config.image_token_id).long(),
        }

    def _tokens(
        self,
        input_ids: Any,
        kwargs: dict[str, Any],
        kept: tuple[Any, int, tuple[str, ...]],
        max_new: int,
        config: GenerationConfig,
        generator: Any,
        stats: GenerationStats,
        clock: _Clock,
    ) -> Iterator[int]:
        """Prefill, then yield up to `max_new` tokens; stops at end-of-sequence."""
        import torch

        from medlens.models.fastpath import prefix
        from medlens.models.fastpath.decode import growing_cache

        cache, start, keys = kept
        # Appends K/V in place (the default cache re-copies all of it every token).
        cache = cache or growing_cache(self.model.config.get_text_config())
        t_prefill = time.perf_counter()
        logits = self.model(
            input_ids=input_ids[:, start:],
            attention_mask=torch.ones_like(input_ids),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        ).logits[0, -1]
        # Kept for the next request (a follow-up): prefix.reuse decides whether it fits.
        self._prefix = held = prefix.Prefix(input_ids[0].tolist(), keys, cache)
        if not bool(torch.isfinite(logits).any()):
            raise GenerationError(
                "The model produced NaN/inf scores (numerical failure). Run it in "
                "bfloat16 or float32, never float16."
            )
        for step in range(max_new):
            token = pick_token(logits, self._banned, self.eos_ids, config, step, generator)
            if step == 0:
                now = time.perf_counter()
                stats.timings["prefill"] = now - t_prefill
                stats.timings["first_token"] = now - clock.start
                clock.decode_start = now
            if token in self.eos_ids:
                stats.finish_reason = "stop"
                return
            yield token
            if step + 1 == max_new:
                return
            if self._step is not None:  # same maths, less per-token overhead (CPU)
                logits = self._step(token, cache)
            else:
                logits = self.model(
                    input_ids=torch.tensor([[token]], device=self.device),
                    past_key_values=cache,
                    use_cache=True,
                ).logits[0, -1]
            held.fed.append(token)  # only once its K/V is in the cache

    def _room(self, prompt_len: int, wanted: int) -> int:
        """New tokens that fit the model's context after this prompt (clear error if none)."""
        limit = int(getattr(self.model.config.get_text_config(), "max_position_embeddings", 0))
        if limit and prompt_len >= limit:
            raise GenerationError(
                f"The prompt is {prompt_len} tokens; model {self.info.model_id!r} takes at most "
                f"{limit}. Use fewer images or shorter text."
            )
        return max(0, min(wanted, limit - prompt_len)) if limit else wanted

    def _decode(self, out_ids: list[int]) -> str:
        # Not skip_special_tokens=True: Gemma marks <unused94>/<unused95> special, and the
        # thinking filter needs them to keep a 27B thought out of the answer.
        kept = [i for i in out_ids if i not in self._skip_ids]
        return self.tokenizer.decode(kept, skip_special_tokens=False)

    # --- scoring -------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def loglikelihood(self, context: str, continuations: Sequence[str]) -> list[float]:
        """Sum of log p(continuation tokens | context), raw text (no chat template)."""
        with self._lock:
            return loglikelihood(self.model, self.tokenizer, self.device, context, continuations)

    def clear_image_cache(self) -> None:
        """Forget encoded images and the kept conversation cache (the next call starts cold)."""
        self._image_cache.clear()
        self._prefix = None


@dataclass
class _Clock:
    """When a generation started and when its decoding (after the first token) began."""

    start: float
    decode_start: float | None = None

    def finish(self, stats: GenerationStats) -> None:
        end = time.perf_counter()
        decode = end - self.decode_start if self.decode_start is not None else 0.0
        stats.timings["decode"] = decode
        stats.timings["total"] = end - self.start
        if stats.output_tokens > 1 and decode > 0:
            stats.timings["decode_tokens_per_s"] = (stats.output_tokens - 1) / decode


def load_generator(
    record: Any,
    path: Path,
    *,
    device: str,
    dtype: str,
    weights_hash: str = "",
    adapter: Path | None = None,
) -> TransformersGenerator:
    """Load a checkpoint folder (Gemma 3 VLM or causal LM) for generation; `adapter`: a
    LoRA adapter folder merged into it (models/adapters.py)."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    configure_threads()
    config = AutoConfig.from_pretrained(path)
    tdtype = torch_dtype(dtype)
    if hasattr(config, "vision_config"):
        if config.model_type != "gemma3":
            raise ConfigError(
                f"{path}: model type {config.model_type!r} is not supported for images "
                "(MedLens runs Gemma 3 / MedGemma vision-language models)."
            )
        auto_cls, proc_cls = AutoModelForImageTextToText, AutoProcessor
    else:
        auto_cls, proc_cls = AutoModelForCausalLM, AutoTokenizer
    # On CUDA load straight onto the GPU (a 27B model need not fit in host RAM first).
    device_map = device if device.startswith("cuda") else None
    model = auto_cls.from_pretrained(path, dtype=tdtype, device_map=device_map)
    if adapter is not None:
        from medlens.models.adapters import merge_into

        model = merge_into(model, adapter)
    processor = proc_cls.from_pretrained(path)
    if device_map is None:
        model.to(device)
    model.eval()
    # Fast CPU path: weight-only int8/int4 decoder linears (+ int8 vision compute). On a
    # CPU a real checkpoint takes int8 unless its options or MEDLENS_QUANTIZE say otherwise
    # (fastpath/cpu_default.py: the fastest measured path that passes the quality guard).
    # Provenance shows e.g. "bfloat16+int8", so quantized output never passes for bf16.
    from medlens.models.fastpath import apply_fastpath
    from medlens.models.fastpath.cpu_default import options_for

    apply_fastpath(model, options_for(record, device))
    quantized = getattr(model, "medlens_fastpath").quantize  # noqa: B009 (set just above)
    if not device.startswith("cuda"):
        # One-token GQA attention without SDPA's slow enable_gqa kernel on CPU (7x per layer).
        from medlens.models.fastpath.decode import use_packed_attention

        use_packed_attention(model.config.get_text_config())
    shown_dtype = dtype if quantized == "none" else f"{dtype}+{quantized}"
    info = transformers_info(record, weights_hash=weights_hash, dtype=shown_dtype, device=device)
    return TransformersGenerator(model, processor, info)


def _fused_step(model: Any, device: Any) -> Any:
    """The flat decode step for Gemma 3 on CPU (fastpath/step.py), or None.

    MEDLENS_FUSED_STEP=0 keeps every token on the model's own forward.
    """
    import os

    if device.type != "cpu":
        return None
    if os.environ.get("MEDLENS_FUSED_STEP", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    from medlens.models.fastpath.apply import release_freed_memory
    from medlens.models.fastpath.step import FusedStep

    step = FusedStep.build(model)
    release_freed_memory()  # fusing re-lays q/k/v and gate/up: the old buffers are freed
    return step
