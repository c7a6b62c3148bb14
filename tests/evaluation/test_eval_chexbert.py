"""CheXbert labeler: original checkpoint format, exact forward pass, F1 through the CLI, errors.

A tiny random BERT (hidden 32, 2 layers) plus the 14 upstream heads is saved exactly as
stanfordmlgroup/CheXbert saves it (DataParallel `module.` keys under 'model_state_dict',
with epoch and Adam state beside it), next to a tiny WordPiece vocab.txt and config.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from medlens.cli.main import app  # noqa: E402
from medlens.errors import DataError, MedLensError  # noqa: E402
from medlens.evaluation import chexbert  # noqa: E402
from medlens.evaluation.report_metrics import model_metrics_status  # noqa: E402

runner = CliRunner()
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "mild", "cardiomegaly", "pleural",
    "effusion", "heart", "is", "normal", "size", "the", "left", ".", ",", "##s",
]  # fmt: skip
POS_TEXT = "Mild cardiomegaly."  # the Cardiomegaly head is built to call this positive
NEG_TEXT = "No cardiomegaly.\n\n  Normal heart size."  # ... and this negative
HEADS = [f"module.linear_heads.{i}" for i in range(14)]
CARDIO, EDEMA, NO_FINDING = 1, 4, 13  # head indices (upstream CONDITIONS order)


def _bert_dir(root: Path) -> tuple[Path, object]:
    folder = root / "bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    config.save_pretrained(folder)
    return folder, config


def _cls(bert: object, tokenizer: object, text: str) -> torch.Tensor:
    ids = tokenizer(chexbert.clean_report(text), truncation=True, max_length=512)["input_ids"]
    with torch.no_grad():
        return bert(torch.tensor([ids])).last_hidden_state[0, 0]


def _save(path: Path, bert: object, heads: list[torch.nn.Linear]) -> None:
    """Upstream layout: DataParallel keys, plus epoch and optimizer state beside the model."""
    state = {f"module.bert.{k}": v for k, v in bert.state_dict().items()}
    for i, head in enumerate(heads):
        state[f"{HEADS[i]}.weight"] = head.weight.detach().clone()
        state[f"{HEADS[i]}.bias"] = head.bias.detach().clone()
    opt = torch.optim.Adam(heads[0].parameters(), lr=2e-5)
    heads[0].weight.sum().backward()
    opt.step()
    opt.zero_grad()
    with torch.no_grad():  # undo the step so the saved weights stay the ones above
        heads[0].weight.copy_(state[f"{HEADS[0]}.weight"])
        heads[0].bias.copy_(state[f"{HEADS[0]}.bias"])
    torch.save(
        {"epoch": 3, "model_state_dict": state, "optimizer_state_dict": opt.state_dict()}, path
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """random.pth: random heads; forced.pth: heads with known outputs (see test (b))."""
    root = tmp_path_factory.mktemp("chexbert")
    bert_dir, config = _bert_dir(root)
    torch.manual_seed(0)
    bert = transformers.BertModel(config).eval()
    tokenizer = transformers.BertTokenizer.from_pretrained(bert_dir)
    heads = [torch.nn.Linear(32, 4) for _ in range(13)] + [torch.nn.Linear(32, 2)]
    _save(root / "random.pth", bert, heads)

    # Cardiomegaly: a linear rule on the [CLS] state that separates POS_TEXT (class 1) from
    # NEG_TEXT (class 2) by a wide margin; Edema: always uncertain (3); No Finding: always
    # blank (0); every other head: always negative (2).
    h_pos, h_neg = _cls(bert, tokenizer, POS_TEXT), _cls(bert, tokenizer, NEG_TEXT)
    d, mid = h_pos - h_neg, (h_pos + h_neg) / 2
    k = 100.0 / float(d @ d)
    forced = [torch.nn.Linear(32, 4) for _ in range(13)] + [torch.nn.Linear(32, 2)]
    with torch.no_grad():
        for i, head in enumerate(forced):
            head.weight.zero_()
            head.bias.zero_()
            if i == CARDIO:
                head.weight[1], head.bias[1] = k * d, -k * float(d @ mid)
                head.weight[2], head.bias[2] = -k * d, k * float(d @ mid)
            elif i == EDEMA:
                head.bias[3] = 100.0
            elif i == NO_FINDING:
                head.bias[0] = 100.0
            else:
                head.bias[2] = 100.0
    _save(root / "forced.pth", bert, forced)
    return {"root": root, "bert": bert_dir, "random": root / "random.pth",
            "forced": root / "forced.pth"}  # fmt: skip


def _env(monkeypatch: pytest.MonkeyPatch, ckpt: Path | None, bert: Path | None) -> None:
    for var, value in ((chexbert.CHECKPOINT_ENV, ckpt), (chexbert.BERT_ENV, bert)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, str(value))


def test_clean_report_and_512_token_cut(tiny: dict[str, Path]) -> None:
    assert chexbert.clean_report("  Mild\n\ncardiomegaly.\t Left  effusion. ") == (
        "Mild cardiomegaly. Left effusion."
    )
    tok = transformers.BertTokenizer.from_pretrained(tiny["bert"])
    short, long, empty = chexbert.encode(["Mild cardiomegaly.", "the heart " * 400, "  "], tok)
    assert short == tok("Mild cardiomegaly.")["input_ids"]
    assert len(long) == 512 and long[0] == tok.cls_token_id and long[-1] == tok.sep_token_id
    assert empty == [tok.cls_token_id, tok.sep_token_id]


def test_loader_matches_independent_forward_pass(tiny: dict[str, Path]) -> None:
    lab = chexbert.load_labeler(chexbert.ChexbertPaths(tiny["random"], tiny["bert"]), batch_size=2)
    texts = [POS_TEXT, NEG_TEXT, "", "the heart " * 400, "Left pleural effusions, no edema."]
    got = lab.logits(texts)
    assert [g.shape for g in got] == [(5, 4)] * 13 + [(5, 2)]

    # Independent path: transformers' BertModel + hand-applied heads, one report at a time.
    state = torch.load(tiny["random"], weights_only=True)["model_state_dict"]
    config = transformers.BertConfig.from_pretrained(tiny["bert"])
    bert = transformers.BertModel(config).eval()
    prefix = "module.bert."
    bert.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    tok = transformers.BertTokenizer.from_pretrained(tiny["bert"])
    for n, text in enumerate(texts):
        cls = _cls(bert, tok, text)
        for i in range(14):
            want = cls @ state[f"{HEADS[i]}.weight"].T + state[f"{HEADS[i]}.bias"]
            assert torch.allclose(torch.from_numpy(got[i][n]), want, atol=1e-5), (n, i)
    labels = lab.label(texts)
    assert list(labels[0]) == list(chexbert.CONDITIONS)
    assert labels[3]["Cardiomegaly"] == int(got[CARDIO][3].argmax())


def _pairs(tmp: Path) -> Path:
    gens, refs = [POS_TEXT, POS_TEXT, NEG_TEXT, NEG_TEXT], [POS_TEXT, NEG_TEXT, POS_TEXT, NEG_TEXT]
    path = tmp / "pairs.jsonl"
    path.write_text("".join(
        json.dumps({"id": str(i), "generated": g, "reference": r}) + "\n"
        for i, (g, r) in enumerate(zip(gens, refs, strict=True))
    ))  # fmt: skip
    return path


def test_forced_heads_give_hand_computed_f1_through_cli(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, tiny["forced"], tiny["bert"])
    assert model_metrics_status()["chexbert"].startswith("available:")
    pairs = _pairs(tmp_path)
    res = runner.invoke(app, ["eval", "reports", "--pairs", str(pairs), "--json"])
    assert res.exit_code == 0, res.output
    cb = json.loads(res.stdout)["chexbert"]
    # Cardiomegaly: (pos,pos) tp, (pos,neg) fp, (neg,pos) fn, (neg,neg) tn -> F1 2/(2+1+1).
    card = cb["per_label"]["Cardiomegaly"]
    assert (card["tp"], card["fp"], card["fn"], card["tn"]) == (1, 1, 1, 1)
    assert card["f1"] == pytest.approx(0.5)
    # Edema is uncertain everywhere: not positive by default, so never positive -> undefined.
    assert cb["per_label"]["Edema"]["f1"] is None and "Edema" in cb["undefined_labels"]
    assert len(cb["undefined_labels"]) == 13 and cb["n"] == 4
    assert cb["macro_f1"] == pytest.approx(0.5) and cb["micro_f1"] == pytest.approx(0.5)
    assert cb["checkpoint"] == str(tiny["forced"])

    res = runner.invoke(app, ["eval", "reports", "--pairs", str(pairs), "--json",
                              "--uncertain", "positive"])  # fmt: skip
    assert res.exit_code == 0, res.output
    cb = json.loads(res.stdout)["chexbert"]
    # Edema now tp 4 -> F1 1; macro (0.5 + 1) / 2; micro 2*5 / (2*5 + 1 + 1).
    assert cb["per_label"]["Edema"]["tp"] == 4 and cb["per_label"]["Edema"]["f1"] == 1.0
    assert cb["macro_f1"] == pytest.approx(0.75) and cb["macro_f1_top5"] == pytest.approx(0.75)
    assert cb["micro_f1"] == pytest.approx(10 / 12)

    res = runner.invoke(app, ["eval", "reports", "--pairs", str(pairs)])
    assert res.exit_code == 0, res.output
    assert "CheXbert-label macro F1 0.500 over 1 labels" in res.output
    assert "chexbert: skipped" not in res.output and "radgraph: skipped" in res.output


def test_without_env_the_skip_reason_is_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, None, None)
    res = runner.invoke(app, ["eval", "reports", "--pairs", str(_pairs(tmp_path)), "--json"])
    data = json.loads(res.stdout)
    assert "chexbert" not in data
    assert "MEDLENS_CHEXBERT_CHECKPOINT" in data["model_metrics"]["chexbert"]
    assert "not supported" in data["model_metrics"]["radgraph"]


def test_bad_setups_are_one_line_cli_errors(tiny: dict[str, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint" * 10)
    pairs = _pairs(tmp_path)
    cases = [
        (tmp_path / "missing.pth", tiny["bert"], "is not a file"),
        (garbage, tiny["bert"], "not a readable PyTorch checkpoint"),
        (tiny["forced"], None, "MEDLENS_CHEXBERT_BERT"),
    ]
    for ckpt, bert, needle in cases:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDLENS_CHEXBERT")}
        env[chexbert.CHECKPOINT_ENV] = str(ckpt)
        if bert is not None:
            env[chexbert.BERT_ENV] = str(bert)
        proc = subprocess.run(
            [sys.executable, "-m", "medlens.cli.main", "eval", "reports", "--pairs", str(pairs)],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert proc.returncode != 0, needle
        assert proc.stderr.startswith("error: ") and needle in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_unsafe_or_foreign_checkpoints_are_refused(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    state = torch.load(tiny["random"], weights_only=True)["model_state_dict"]
    pickled = tmp_path / "pickled.pth"  # upstream-like file that also pickles a Namespace
    torch.save({"model_state_dict": state, "args": argparse.Namespace(lr=1)}, pickled)
    foreign = tmp_path / "foreign.pth"
    torch.save({"model_state_dict": {"encoder.weight": torch.zeros(2)}}, foreign)
    headless = tmp_path / "headless.pth"
    torch.save({"model_state_dict": {k: v for k, v in state.items() if "heads.13" not in k}},
               headless)  # fmt: skip
    for path, needle in [
        (pickled, "weights_only=True"),
        (foreign, "not a CheXbert checkpoint"),
        (headless, "missing: linear_heads.13.weight"),
    ]:
        with pytest.raises(DataError) as err:
            chexbert.load_labeler(chexbert.ChexbertPaths(path, tiny["bert"]))
        assert needle in str(err.value) and "\n" not in str(err.value)

    wide = tmp_path / "wide"
    wide.mkdir()
    (wide / "vocab.txt").write_text((tiny["bert"] / "vocab.txt").read_text())
    cfg = json.loads((tiny["bert"] / "config.json").read_text())
    (wide / "config.json").write_text(json.dumps({**cfg, "hidden_size": 48}))
    with pytest.raises(DataError, match="shape mismatch"):
        chexbert.load_labeler(chexbert.ChexbertPaths(tiny["random"], wide))
    (wide / "vocab.txt").unlink()
    monkeypatch.setenv(chexbert.CHECKPOINT_ENV, str(tiny["random"]))
    monkeypatch.setenv(chexbert.BERT_ENV, str(wide))
    with pytest.raises(MedLensError, match=r"lacks vocab\.txt"):
        chexbert.resolve_paths()


def test_import_medlens_does_not_import_torch() -> None:
    code = "import sys, medlens, medlens.evaluation.report_metrics, medlens.evaluation.chexbert; " \
        "print('torch' in sys.modules)"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
