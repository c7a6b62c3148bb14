"""Data formats, patient-level split, manifest and batches (pitfalls 1–3, 9, 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medlens.errors import ConfigError
from medlens.training.collate import IGNORE, Collator
from medlens.training.data import build_manifest, load_examples, split_groups


def test_every_format_reads_the_same_pairs(data_files: dict) -> None:
    csv_ex = load_examples(data_files["pairs-csv"], "pairs-csv", split_by="patientid")
    for fmt in ("messages-jsonl", "prompt-completion-jsonl"):
        other = load_examples(data_files[fmt], fmt, split_by="patientid")
        assert [(e.prompt, e.answer, e.image, e.group) for e in other] == [
            (e.prompt, e.answer, e.image, e.group) for e in csv_ex
        ]
    text = load_examples(data_files["text"], "text")
    assert [e.prompt for e in text] == [None] * 4 and [e.answer for e in text] == [
        e.answer for e in csv_ex
    ]


def test_real_metadata_split_keeps_each_patient_on_one_side(shared_data: Path) -> None:
    meta = shared_data / "cxr" / "covid_chestxray" / "metadata.csv"
    examples = load_examples(meta, "pairs-csv", split_by="patientid")
    train, held = split_groups(examples, 0.2, seed=0)
    assert held and train
    assert not {e.group for e in train} & {e.group for e in held}
    by_note: dict[str, set[str]] = {}
    for e in examples:
        by_note.setdefault(e.answer, set()).add(e.group)
    repeated = [
        n for n, g in by_note.items() if len(g) == 1 and sum(e.answer == n for e in examples) > 1
    ]
    assert repeated  # the data does repeat one patient's note over several images
    train_notes, held_notes = {e.answer for e in train}, {e.answer for e in held}
    # ...and such a note never sits on both sides of the split (pitfall 10).
    assert not [n for n in repeated if n in train_notes and n in held_notes]
    manifest = build_manifest(meta, "pairs-csv", "patientid", train, held)
    # Licences come from the data's own metadata: the NC share is visible in the manifest.
    assert any("NC" in k for k in manifest.licences), manifest.licences
    assert len(manifest.data_sha256) == 64 and len(manifest.images) == len(examples)


def test_bad_input_is_a_clear_error(tmp_path: Path, data_files: dict) -> None:
    with pytest.raises(ConfigError, match="column 'nope'"):
        load_examples(data_files["pairs-csv"], "pairs-csv", text_column="nope")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: not valid JSON"):
        load_examples(bad, "prompt-completion-jsonl")
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: needs string fields"):
        load_examples(bad, "prompt-completion-jsonl")
    with pytest.raises(ConfigError, match="Unknown data format"):
        load_examples(bad, "parquet")


@pytest.fixture(scope="module")
def collator(settings, data_files):  # type: ignore[no-untyped-def]
    from transformers import AutoProcessor

    from medlens.models.loader import local_weights
    from medlens.models.registry import load_registry

    record = load_registry(settings).get("medlens/test-medgemma")
    processor = AutoProcessor.from_pretrained(local_weights(record, settings))
    examples = load_examples(data_files["pairs-csv"], "pairs-csv", split_by="patientid")
    return Collator(processor, examples, record.prompt_format, record.preprocess), record


def test_batch_has_one_bos_answer_only_labels_and_token_types(collator) -> None:  # type: ignore[no-untyped-def]
    col, _ = collator
    batch = col([{"idx": i} for i in range(4)])
    tok = col.tokenizer
    image_id = tok.convert_tokens_to_ids("<image_soft_token>")
    specials = {
        tok.pad_token_id,
        image_id,
        tok.convert_tokens_to_ids("<start_of_image>"),
        tok.convert_tokens_to_ids("<end_of_image>"),
        tok.bos_token_id,
    }
    for row in range(4):
        ids = batch["input_ids"][row].tolist()
        labels = batch["labels"][row].tolist()
        assert (batch["input_ids"][row] == tok.bos_token_id).sum() == 1  # pitfall 1
        assert ids[0] == tok.bos_token_id
        kept = [t for t in labels if t != IGNORE]
        assert not specials & set(kept)  # pitfall 2: no image, pad, BOS in labels
        answer = tok(col.examples[row].answer, add_special_tokens=False)["input_ids"]
        assert kept == [*answer, tok.convert_tokens_to_ids("<end_of_turn>")]
    assert "token_type_ids" in batch  # pitfall 3
    assert bool(((batch["input_ids"] == image_id) == (batch["token_type_ids"] == 1)).all())
    assert int(batch["token_type_ids"].sum()) > 0
    assert batch["pixel_values"].shape[0] == 4


def test_training_prompt_is_the_inference_prompt(collator, settings) -> None:  # type: ignore[no-untyped-def]
    from medlens.imaging.ingest import ingest
    from medlens.imaging.preprocess import preprocess
    from medlens.models.protocols import ChatMessage, ImagePart, TextPart
    from medlens.models.session import ModelSession
    from medlens.tasks.prompting import build_messages, load_prompt

    col, record = collator
    ex = col.examples[0]
    gen = ModelSession().generator(record, settings)
    image = ImagePart(preprocess(ingest(ex.image).image, record.preprocess), key="k")
    msgs = [ChatMessage("user", (TextPart(ex.prompt), image))]
    ids, _ = gen.build_prompt(msgs)
    assert col.prompt_ids(ex) == ids
    # The task layer lays the user turn out the same way for this prompt format.
    template = load_prompt("cxr_report")
    built = build_messages(template, prompt_format=record.prompt_format, images=[image])
    kinds = ["image" if isinstance(p, ImagePart) else "text" for p in built[-1].content]
    assert kinds == ["text", "image"]


def test_control_tokens_are_single_special_tokens(settings) -> None:  # type: ignore[no-untyped-def]
    """Pitfall 9: a test tokenizer that split these into characters would let every
    masking test pass for the wrong reason."""
    from transformers import AutoProcessor

    from medlens.models.loader import local_weights
    from medlens.models.registry import load_registry

    record = load_registry(settings).get("medlens/test-medgemma")
    tok = AutoProcessor.from_pretrained(local_weights(record, settings)).tokenizer
    for control in (
        "<bos>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
        "<pad>",
    ):
        ids = tok(control, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] in tok.all_special_ids + list(tok.added_tokens_decoder), (
            control
        )
    gen_eos = _generation_eos(local_weights(record, settings))
    assert tok.convert_tokens_to_ids("<end_of_turn>") in gen_eos


def _generation_eos(path: Path) -> list[int]:
    import json

    eos = json.loads((path / "generation_config.json").read_text())["eos_token_id"]
    return eos if isinstance(eos, list) else [eos]
