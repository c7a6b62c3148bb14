"""The test models: architecture pitfalls handled, markers written, builds idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medlens.models.local_info import TEST_MODEL_MARKER, is_test_model_dir
from medlens.models.testmodels import IMAGE_SIZE, TEST_MODELS_VERSION, make_test_models

transformers = pytest.importorskip("transformers")


def test_every_model_has_a_marker(test_models: dict[str, Path]) -> None:
    assert set(test_models) == {"medgemma-tiny", "medsiglip-tiny", "medgemma-realtext",
                                "gemma3-270m"}
    for name, path in test_models.items():
        assert is_test_model_dir(path)
        marker = json.loads((path / TEST_MODEL_MARKER).read_text())
        assert marker["name"] == name and marker["version"] == TEST_MODELS_VERSION
        assert "not medical" in marker["note"]


def test_medgemma_tiny_config_avoids_the_known_pitfalls(test_models: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    path = test_models["medgemma-tiny"]
    cfg = transformers.AutoConfig.from_pretrained(path)
    assert cfg.model_type == "gemma3"
    assert "full_attention" in cfg.text_config.layer_types
    patches = cfg.vision_config.image_size // cfg.vision_config.patch_size
    side = int(cfg.mm_tokens_per_image**0.5)
    assert side * side == cfg.mm_tokens_per_image and patches % side == 0
    assert cfg.vision_config.image_size == IMAGE_SIZE
    weights = load_file(str(path / "model.safetensors"))
    proj = next(v for k, v in weights.items() if k.endswith("mm_input_projection_weight"))
    assert float(proj.abs().sum()) > 0  # transformers initialises it to zero
    proc = transformers.AutoProcessor.from_pretrained(path)
    tok = proc.tokenizer
    gen_cfg = json.loads((path / "generation_config.json").read_text())
    assert tok.convert_tokens_to_ids("<end_of_turn>") in gen_cfg["eos_token_id"]
    for special in ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
                    "<image_soft_token>", "<bos>", "<eos>", "<pad>"):
        assert tok.convert_tokens_to_ids(special) != tok.unk_token_id, special
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<image_soft_token>")
    assert proc.image_seq_length == cfg.mm_tokens_per_image
    assert tok.chat_template and "<start_of_turn>" in tok.chat_template


def test_realtext_has_medgemma_image_token_ids(test_models: dict[str, Path]) -> None:
    path = test_models["medgemma-realtext"]
    proc = transformers.AutoProcessor.from_pretrained(path)
    cfg = transformers.AutoConfig.from_pretrained(path)
    tok = proc.tokenizer
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in
           [("boi", tok.boi_token), ("eoi", tok.eoi_token), ("image", tok.image_token)]}
    assert ids == {"boi": 255999, "eoi": 256000, "image": 262144}
    assert (cfg.boi_token_index, cfg.eoi_token_index, cfg.image_token_id) == (
        255999, 256000, 262144)
    assert tok.bos_token_id == 2 and tok.eos_token_id == 1
    assert tok.convert_tokens_to_ids("<end_of_turn>") == 106
    assert cfg.text_config.vocab_size == 262208
    assert cfg.text_config.hidden_size == 640 and cfg.text_config.num_hidden_layers == 18
    plain = transformers.AutoConfig.from_pretrained(test_models["gemma3-270m"])
    assert plain.model_type == "gemma3_text"
    assert not hasattr(plain, "quantization_config")


def test_siglip_tiny_shapes(test_models: dict[str, Path]) -> None:
    path = test_models["medsiglip-tiny"]
    cfg = transformers.AutoConfig.from_pretrained(path)
    assert cfg.model_type == "siglip"
    assert cfg.text_config.max_position_embeddings == 64
    assert cfg.vision_config.image_size == IMAGE_SIZE
    assert (path / "spiece.model").is_file()


def test_make_test_models_is_idempotent(tmp_path: Path) -> None:
    first = make_test_models(tmp_path, realtext=False)
    stamp = {n: (p / "model.safetensors").stat().st_mtime_ns for n, p in first.items()}
    second = make_test_models(tmp_path, realtext=False)
    assert second == first
    assert {n: (p / "model.safetensors").stat().st_mtime_ns for n, p in second.items()} == stamp
    assert not list(tmp_path.glob(".*.tmp-*"))  # no half-built folders left behind
