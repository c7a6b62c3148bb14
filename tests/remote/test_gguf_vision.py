"""The GGUF vision path end to end: MedLens's `medgemma-realtext` test model (Gemma 3 270M
text weights + a tiny random SigLIP tower, a real Gemma3ForConditionalGeneration) is
converted with llama.cpp's own convert_hf_to_gguf.py into model + mmproj GGUFs, then an
X-ray goes through llama-cpp-python's libmtmd handler.

The converter comes from the llama-cpp-python sdist (scripts/build-llamacpp.sh unpacks
it into the wheel cache). One workaround is needed: transformers 5 saves the vision
tower's tensors as `vision_tower.*`, while llama.cpp's tensor map knows the older
`vision_tower.vision_model.*` names, so a renamed copy of those tensors is converted.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medlens.models.backends import llamacpp  # imports llama_cpp lazily
from medlens.models.protocols import (
    ChatMessage,
    GenerationConfig,
    GenerationStats,
    ImagePart,
    TextPart,
)
from medlens.models.registry import ModelRecord

CI = os.environ.get("MEDLENS_CI") == "1"
if importlib.util.find_spec("llama_cpp") is None:
    if CI:
        raise RuntimeError("llama-cpp-python missing in CI: run scripts/build-llamacpp.sh")
    pytest.skip("llama-cpp-python not installed", allow_module_level=True)


LLAMA_CPP_VERSION = "0.3.36"


def _converter() -> Path:
    explicit = os.environ.get("MEDLENS_LLAMACPP_CONVERT")
    cache = Path(os.environ.get("MEDLENS_WHEEL_CACHE", Path.home() / ".cache/medlens-wheels"))
    folder = Path(explicit) if explicit else cache / f"llama.cpp-convert-{LLAMA_CPP_VERSION}"
    script = folder / "convert_hf_to_gguf.py"
    if not script.is_file():
        msg = f"llama.cpp converter not found at {script}; run scripts/build-llamacpp.sh"
        if CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return script


def _vision_only_copy(src: Path, dst: Path) -> None:
    """Config + processor files and the vision/projector tensors under llama.cpp's names."""
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, dst / f.name)
    tensors = {}
    for name, value in load_file(src / "model.safetensors").items():
        if name.startswith("vision_tower.") and not name.startswith("vision_tower.vision_model."):
            tensors["vision_tower.vision_model." + name[len("vision_tower."):]] = value
        elif name.startswith("multi_modal_projector."):
            tensors[name] = value
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})


def _convert(script: Path, model_dir: Path, out: Path, *extra: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    proc = subprocess.run(
        [sys.executable, str(script), str(model_dir), "--outfile", str(out),
         "--outtype", "f16", *extra],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-3000:]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from medlens.config import load_settings
    from medlens.models.testmodels import TEST_MODELS_VERSION, ensure_test_models

    script = _converter()
    src = ensure_test_models(load_settings(), realtext=True)["medgemma-realtext"]
    cache = os.environ.get("MEDLENS_TEST_MODELS_CACHE")
    folder = (Path(cache) / f"gguf-convert-{TEST_MODELS_VERSION}-{LLAMA_CPP_VERSION}"
              if cache else tmp_path_factory.mktemp("gguf-convert"))
    model, mmproj = folder / "medgemma-realtext-f16.gguf", folder / "mmproj-f16.gguf"
    if not (model.is_file() and mmproj.is_file()):
        work = tmp_path_factory.mktemp("convert-work")
        _convert(script, src, work / model.name)
        _vision_only_copy(src, work / "vision")
        _convert(script, work / "vision", work / mmproj.name, "--mmproj")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(work / mmproj.name, mmproj)  # mmproj first: model presence = complete
        shutil.move(work / model.name, model)
    return model, mmproj


@pytest.fixture(scope="module")
def vision_gen(converted):
    model, mmproj = converted
    gen = llamacpp.load_generator(ModelRecord(
        id="test/medgemma-realtext-gguf", kind="generator",
        source=f"gguf:{model}?mmproj={mmproj}&n_threads=2", context_length=1024,
        modalities=("text", "image"), is_test=True))
    yield gen
    gen.close()


def test_xray_through_mmproj(vision_gen, nih_images):
    from PIL import Image

    img = Image.open(nih_images[0]).convert("RGB").resize((64, 64))
    msgs = [ChatMessage.text("system", "You are an expert radiologist."),
            ChatMessage("user", (TextPart("Describe this X-ray"), ImagePart(img, "nih0")))]
    stats = GenerationStats()
    text = "".join(vision_gen.stream(msgs, GenerationConfig(max_new_tokens=8), stats))
    assert text and stats.images_encoded == 1
    assert stats.output_tokens == 8 and stats.finish_reason == "length"
    # 16 image tokens (4x4 patches, mm_tokens_per_image) are part of the prompt.
    text_only = vision_gen.count_tokens("You are an expert radiologist.\n\nDescribe this X-ray")
    assert stats.prompt_tokens >= text_only + 16
    assert vision_gen.info.weights_hash.count("+") == 1  # model + mmproj hashes


def test_converted_text_weights_match_the_original_gguf(vision_gen, tmp_path):
    """The conversion kept the language model: same scores as Google's Q4 GGUF."""
    from medlens.models.testmodels import gemma3_gguf_path

    original = llamacpp.load_generator(ModelRecord(
        id="orig", kind="generator", context_length=1024,
        source=f"gguf:{gemma3_gguf_path(tmp_path)}?chat_format=raw&n_threads=2"))
    context, conts = "The capital of France is", [" Paris", " London"]
    got, want = vision_gen.loglikelihood(context, conts), original.loglikelihood(context, conts)
    assert got[0] > got[1]
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=0.3)
