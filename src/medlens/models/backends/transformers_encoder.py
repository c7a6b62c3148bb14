"""Encoder backend on transformers' SiglipModel (MedSigLIP).

Embedding = pooler_output / its L2 norm (as Google's MedSigLIP code does). Text is
tokenised with padding="max_length" (64 positions): SigLIP was trained that way and
gives different embeddings otherwise. Image embeddings are cached by ImagePart.key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medlens.errors import ConfigError
from medlens.models.backends.torch_runtime import configure_threads, torch_dtype, transformers_info
from medlens.models.protocols import BackendInfo, ImagePart

EMBED_CACHE_SIZE = 4096  # image embeddings are small (dim floats): keep many
BATCH = 16
# Images per image-tower call on a CPU: one at a time keeps each layer's activations in
# cache; MedSigLIP-448 measured 0.47 img/s one by one vs 0.37 in batches of 8 (2 cores).
CPU_IMAGE_BATCH = 1


class TransformersEncoder:
    """Implements protocols.Encoder."""

    def __init__(self, model: Any, processor: Any, info: BackendInfo) -> None:
        import torch

        self.model = model
        self.processor = processor
        self.info = info
        self.device = torch.device(info.device)
        self.logit_scale = float(model.logit_scale.detach().float().exp())
        self.logit_bias = float(model.logit_bias.detach().float().reshape(-1)[0])
        self.dim = int(
            model.config.text_config.projection_size or model.config.text_config.hidden_size
        )
        self.max_text_length = int(model.config.text_config.max_position_embeddings)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.images_encoded = 0  # vision-tower runs so far (cache misses)

    def embed_images(self, images: Sequence[ImagePart]) -> np.ndarray:
        import torch

        with self._lock:
            todo = [k for k in dict.fromkeys(im.key for im in images) if k not in self._cache]
            by_key = {im.key: im for im in images}
            step = CPU_IMAGE_BATCH if self.device.type == "cpu" else BATCH
            for start in range(0, len(todo), step):
                keys = todo[start : start + step]
                pixel = self.processor.image_processor(
                    images=[by_key[k].image.convert("RGB") for k in keys], return_tensors="pt"
                )["pixel_values"].to(self.device, self.model.dtype)
                with torch.inference_mode():
                    out = self.model.get_image_features(pixel_values=pixel)
                emb = _normalise(_pooled(out))
                for key, row in zip(keys, emb, strict=True):
                    self._cache[key] = row
                    while len(self._cache) > EMBED_CACHE_SIZE:
                        self._cache.popitem(last=False)
                self.images_encoded += len(keys)
            if not images:
                return np.zeros((0, self.dim), np.float32)
            return np.stack([self._cache[im.key] for im in images]).astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ConfigError("Encoder texts must be non-empty strings.")
        rows: list[np.ndarray] = []
        with self._lock:
            for start in range(0, len(texts), BATCH):
                batch = list(texts[start : start + BATCH])
                tok = self.processor.tokenizer(
                    batch,
                    padding="max_length",
                    truncation=True,
                    max_length=self.max_text_length,
                    return_tensors="pt",
                )
                # Pass what the tokenizer returns (as the MedSigLIP card's `model(**inputs)`
                # does), so embeddings match the reference usage exactly.
                feed = {
                    k: v.to(self.device)
                    for k, v in tok.items()
                    if k in ("input_ids", "attention_mask", "position_ids")
                }
                with torch.inference_mode():
                    out = self.model.get_text_features(**feed)
                rows.append(_normalise(_pooled(out)))
        return np.concatenate(rows).astype(np.float32)

    def clear_cache(self) -> None:
        self._cache.clear()


def _pooled(out: Any) -> Any:
    return getattr(out, "pooler_output", out)


def _normalise(t: Any) -> np.ndarray:
    arr = t.detach().float().cpu().numpy()
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


def load_encoder(
    record: Any, path: Path, *, device: str, dtype: str, weights_hash: str = ""
) -> TransformersEncoder:
    from transformers import AutoConfig, AutoModel, AutoProcessor

    configure_threads()
    config = AutoConfig.from_pretrained(path)
    if config.model_type not in ("siglip", "siglip2"):
        raise ConfigError(
            f"{path}: model type {config.model_type!r} is not an image/text encoder MedLens "
            "supports (SigLIP / MedSigLIP)."
        )
    device_map = device if device.startswith("cuda") else None
    model = AutoModel.from_pretrained(path, dtype=torch_dtype(dtype), device_map=device_map)
    if device_map is None:
        model.to(device)
    model.eval()
    from medlens.models.fastpath import fast_vision_attention

    fast_vision_attention(model)  # CPU: the tower's attention on the bf16 kernel, int8 linears
    processor = AutoProcessor.from_pretrained(path)
    # Provenance names int8 compute (a bf16 tower on a VNNI CPU; fastpath/vision_int8.py).
    shown = f"{dtype}+int8" if getattr(model, "medlens_vision_int8", 0) else dtype
    info = transformers_info(record, weights_hash=weights_hash, dtype=shown, device=device)
    return TransformersEncoder(model, processor, info)
