"""Prompt files, message order per prompt format, data-section rules."""

from __future__ import annotations

from importlib import resources

import pytest
from PIL import Image

from medlens.errors import ConfigError
from medlens.models.protocols import ImagePart
from medlens.tasks.prompting import (
    DATA_CLOSE,
    DATA_OPEN,
    THINKING_PREFIX,
    build_messages,
    data_section,
    load_prompt,
)

REQUIRED = {"radiologist-system", "cxr-report", "cxr-comparison", "cxr-lateral",
            "dermatology", "pathology", "fundus", "ct", "followup", "back-translate",
            "summarize-chunk", "summarize-merge"}
IMG = ImagePart(Image.new("RGB", (8, 8)), key="k")


def test_every_prompt_file_loads_with_name_and_version() -> None:
    folder = resources.files("medlens.tasks.prompts")
    names = {p.name[:-5].replace("_", "-") for p in folder.iterdir() if p.name.endswith(".toml")}
    assert names >= REQUIRED
    for name in names:
        p = load_prompt(name)
        assert p.name == name and p.version and (p.instruction or p.kind == "system")
        assert "{" not in p.instruction  # no template holes for untrusted text


def test_radiologist_system_prompt_matches_the_model_card() -> None:
    assert load_prompt("cxr-report").system == "You are an expert radiologist."
    assert load_prompt("cxr-report").system_ref == "radiologist-system@1"


def test_unknown_prompt_and_format() -> None:
    with pytest.raises(ConfigError):
        load_prompt("nope")
    with pytest.raises(ConfigError):
        build_messages(load_prompt("cxr-report"), prompt_format="weird")
    with pytest.raises(ConfigError, match="text-only"):
        build_messages(load_prompt("cxr-report"), prompt_format="medgemma-text", images=[IMG])


def test_v1_order_system_then_text_then_images() -> None:
    msgs = build_messages(load_prompt("cxr-report"), prompt_format="medgemma-v1",
                          images=[IMG, IMG], data={"indication": "cough"})
    assert [m.role for m in msgs] == ["system", "user"]
    assert [p.type for p in msgs[1].content] == ["text", "image", "image"]


def test_15_order_images_then_text_no_system() -> None:
    msgs = build_messages(load_prompt("cxr-report"), prompt_format="medgemma-1.5", images=[IMG])
    assert [m.role for m in msgs] == ["user"]
    assert [p.type for p in msgs[0].content] == ["image", "text"]


def test_thinking_prefix() -> None:
    msgs = build_messages(load_prompt("cxr-report"), prompt_format="medgemma-v1", thinking=True)
    assert msgs[0].content[0].text == f"{THINKING_PREFIX} You are an expert radiologist."


def test_data_section_only_when_there_is_data() -> None:
    assert data_section({"a": None, "b": "  "}) == ""
    block = data_section({"indication": "cough"})
    assert block.count(DATA_OPEN) == 1 and block.endswith(DATA_CLOSE)
    assert "indication: cough" in block
