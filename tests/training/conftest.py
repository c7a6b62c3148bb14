"""Fixtures for fine-tuning tests: 4 image–note pairs (4 patients) in every data format."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

if os.environ.get("MEDLENS_CI") != "1":
    # CI installs the `train` extra (Makefile EXTRAS): there a missing package is a failure.
    pytest.importorskip("peft")
    pytest.importorskip("trl")

N_PAIRS = 4


def pick_pairs(shared: Path, n: int = N_PAIRS, max_chars: int = 160) -> list[dict[str, str]]:
    """The first n rows of covid_chestxray with a short note, one per patient."""
    root = shared / "cxr" / "covid_chestxray"
    with (root / "metadata.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    seen: set[str] = set()
    out = []
    for row in rows:
        note = (row["clinical_notes"] or "").strip()
        if note and len(note) <= max_chars and row["patientid"] not in seen:
            seen.add(row["patientid"])
            out.append({**row, "image_path": str(root / row["image_file"])})
        if len(out) == n:
            break
    return out


@pytest.fixture(scope="session")
def pairs(shared_data: Path) -> list[dict[str, str]]:
    return pick_pairs(shared_data)


@pytest.fixture(scope="session")
def data_files(pairs: list[dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same 4 pairs as pairs-csv, messages-jsonl, prompt-completion-jsonl and text."""
    from medlens.training.data import DEFAULT_PROMPT

    d = tmp_path_factory.mktemp("finetune-data")
    with (d / "pairs.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["image_file", "clinical_notes", "patientid", "license"])
        w.writeheader()
        for p in pairs:
            w.writerow(
                {
                    "image_file": p["image_path"],
                    "clinical_notes": p["clinical_notes"],
                    "patientid": p["patientid"],
                    "license": p["license"],
                }
            )
    msgs, pc, text = [], [], []
    for p in pairs:
        note = p["clinical_notes"].strip()
        msgs.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": DEFAULT_PROMPT},
                            {"type": "image", "image": p["image_path"]},
                        ],
                    },
                    {"role": "assistant", "content": [{"type": "text", "text": note}]},
                ],
                "patientid": p["patientid"],
            }
        )
        pc.append(
            {
                "prompt": DEFAULT_PROMPT,
                "completion": note,
                "image": p["image_path"],
                "patientid": p["patientid"],
            }
        )
        text.append({"text": note})
    for name, rows in (("messages.jsonl", msgs), ("pc.jsonl", pc), ("text.jsonl", text)):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return {
        "pairs-csv": d / "pairs.csv",
        "messages-jsonl": d / "messages.jsonl",
        "prompt-completion-jsonl": d / "pc.jsonl",
        "text": d / "text.jsonl",
    }


@pytest.fixture(scope="session")
def settings(tiny_test_models):  # type: ignore[no-untyped-def]
    from medlens.config import load_settings

    return load_settings()
