"""Hierarchical summarisation of long records with a (mock) text model."""

from __future__ import annotations

from pathlib import Path

import pytest

from medlens.errors import DataError
from medlens.tasks.ehr.summarize import chunk_text, read_record, summarize_text

from .conftest import MockGenerator


def _count(text: str) -> int:
    return len(text.split())


def test_chunks_respect_the_limit() -> None:
    text = "\n".join(f"line {i} " + "word " * 20 for i in range(50)) + "\n" + "w " * 300
    chunks = chunk_text(text, 100, _count)
    assert all(_count(c) <= 100 for c in chunks) and len(chunks) > 10
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


def test_short_record_is_one_call() -> None:
    gen = MockGenerator(["- asthma"])
    r = summarize_text(gen, "Asthma since childhood.", context_length=4096)
    assert (r.summary, r.calls, r.levels) == ("- asthma", 1, 1)
    msgs = gen.calls[0]
    assert msgs[0].role == "system" and "Asthma since childhood." in msgs[1].content[0].text


def test_long_record_is_summarised_hierarchically() -> None:
    record = "\n".join(f"Note {i}: " + "detail " * 40 for i in range(40))  # ~1700 words
    gen = MockGenerator([lambda m: "short summary " * 5] * 100)
    r = summarize_text(gen, record, chunk_tokens=200)
    assert r.levels >= 2 and r.chunks_per_level[0] > 1 and r.chunks_per_level[-1] == 1
    assert r.calls == sum(r.chunks_per_level)
    assert r.prompts[0] == "summarize-chunk" and r.prompts[-1] == "summarize-merge"
    for call in gen.calls:  # every request fits the chunk budget plus instructions
        assert _count(call[-1].content[0].text) <= 200 + 200


def test_read_record_fhir_and_notes(shared_data: Path, tmp_path: Path) -> None:
    kind, text = read_record(next((shared_data / "fhir").glob("Tony_Beer*.json")))
    assert kind == "fhir" and "Pulmonary emphysema" in text and "Tony" not in text
    notes = tmp_path / "n.txt"
    notes.write_text("Patient with cough.")
    assert read_record(notes) == ("notes", "Patient with cough.")
    with pytest.raises(DataError):
        read_record(tmp_path / "missing.txt")
    with pytest.raises(DataError):
        summarize_text(MockGenerator(), "   ")


def test_hierarchical_summary_with_the_tiny_test_model(tiny_test_models: dict,
                                                       shared_data: Path) -> None:
    """Real tokenizer and backend: a long record is chunked by the model's own token count."""
    from medlens.config import load_settings
    from medlens.models.session import load_generator

    gen = load_generator("medlens/test-medgemma", load_settings())
    _, record = read_record(next((shared_data / "fhir").glob("Michele_Wolf*.json")))
    r = summarize_text(gen, record, chunk_tokens=400, max_new_tokens=4,
                       prompt_format="medgemma-v1")
    assert r.input_tokens > 400 and r.chunks_per_level[0] >= 2
    assert r.calls == sum(r.chunks_per_level) and isinstance(r.summary, str)
