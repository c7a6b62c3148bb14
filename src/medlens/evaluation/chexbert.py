"""CheXbert report labeler (Smit et al. 2020), run from the original Stanford checkpoint.

Optional and local only: it runs when MEDLENS_CHEXBERT_CHECKPOINT names the `chexbert.pth`
released with stanfordmlgroup/CheXbert and MEDLENS_CHEXBERT_BERT names a folder holding
bert-base-uncased's `config.json` and `vocab.txt`; nothing is ever downloaded. Needs torch
and transformers (the `hf` extra), imported only when a labeler is loaded.

The model mirrors upstream `src/models/bert_labeler.py`: a BertModel whose final [CLS]
hidden state feeds 13 linear heads with 4 classes (0 blank, 1 positive, 2 negative,
3 uncertain) and one 2-class head for "No Finding" (0 blank, 1 positive). Reports are
cleaned and cut to 512 tokens as upstream `bert_tokenizer.py` does.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlens.errors import BackendUnavailable, ConfigError, DataError, ModelNotAvailable

CHECKPOINT_ENV = "MEDLENS_CHEXBERT_CHECKPOINT"
BERT_ENV = "MEDLENS_CHEXBERT_BERT"
# Upstream order: head i predicts CONDITIONS[i].
CONDITIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices", "No Finding",
)  # fmt: skip
BLANK, POSITIVE, NEGATIVE, UNCERTAIN = 0, 1, 2, 3
MAX_TOKENS = 512

_GET_CHECKPOINT = (
    "download chexbert.pth from the link in https://github.com/stanfordmlgroup/CheXbert "
    f"(README, 'Checkpoint download') and set {CHECKPOINT_ENV}=/path/to/chexbert.pth"
)
_GET_BERT = (
    "copy bert-base-uncased's config.json and vocab.txt into a folder (e.g. `hf download "
    "google-bert/bert-base-uncased config.json vocab.txt --local-dir DIR` on a machine with "
    f"network) and set {BERT_ENV}=DIR"
)


@dataclass(frozen=True)
class ChexbertPaths:
    checkpoint: Path
    bert_dir: Path


def requested() -> bool:
    """True once the user points MEDLENS_CHEXBERT_CHECKPOINT somewhere (opts in)."""
    return bool(os.environ.get(CHECKPOINT_ENV))


def resolve_paths() -> ChexbertPaths:
    """The configured local files, or a one-line error that says how to get what is missing."""
    if any(importlib.util.find_spec(m) is None for m in ("torch", "transformers")):
        raise BackendUnavailable("CheXbert needs torch and transformers: pip install 'medlens[hf]'")
    ckpt_env = os.environ.get(CHECKPOINT_ENV)
    if not ckpt_env:
        raise ConfigError(f"CheXbert weights are not configured: {_GET_CHECKPOINT}")
    ckpt = Path(ckpt_env).expanduser()
    if not ckpt.is_file():
        raise ModelNotAvailable(f"{CHECKPOINT_ENV}={ckpt_env} is not a file: {_GET_CHECKPOINT}")
    bert_env = os.environ.get(BERT_ENV)
    if not bert_env:
        raise ConfigError(f"CheXbert also needs the BERT config and vocabulary: {_GET_BERT}")
    bert = Path(bert_env).expanduser()
    missing = [f for f in ("config.json", "vocab.txt") if not (bert / f).is_file()]
    if missing:
        raise ModelNotAvailable(f"{BERT_ENV}={bert_env} lacks {', '.join(missing)}: {_GET_BERT}")
    return ChexbertPaths(ckpt, bert)


def clean_report(text: str) -> str:
    """Upstream cleaning: strip, newlines to spaces, collapse whitespace, strip."""
    return re.sub(r"\s+", " ", text.replace("\n", " ")).strip()


def encode(texts: Sequence[str], tokenizer: Any) -> list[list[int]]:
    """[CLS] tokens [SEP] per report, cut to 512 ids keeping the final [SEP] (as upstream)."""
    out = []
    for text in texts:
        tokens = tokenizer.tokenize(clean_report(text))
        ids = tokenizer.convert_tokens_to_ids(tokens)[: MAX_TOKENS - 2]
        out.append([tokenizer.cls_token_id, *ids, tokenizer.sep_token_id])
    return out


@dataclass
class ChexbertLabeler:
    """A loaded labeler: `model` is a torch ModuleDict {bert, linear_heads}, on CPU, eval mode."""

    model: Any
    tokenizer: Any
    checkpoint: Path
    batch_size: int = 16

    def logits(self, texts: Sequence[str]) -> list[Any]:
        """Per head, a float numpy array (n_reports, n_classes); head i is CONDITIONS[i]."""
        import numpy as np
        import torch

        ids = encode(texts, self.tokenizer)
        pad = 0  # upstream PAD_IDX; padded positions are masked out anyway
        heads: list[list[Any]] = [[] for _ in CONDITIONS]
        # Length-sorted batches pad less; results go back to the input order below.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = [ids[i] for i in order[start : start + self.batch_size]]
                width = max(len(x) for x in batch)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, x in enumerate(batch):
                    input_ids[row, : len(x)] = torch.tensor(x)
                    mask[row, : len(x)] = 1
                hidden = self.model["bert"](input_ids, attention_mask=mask).last_hidden_state
                cls = hidden[:, 0, :]
                for h, head in enumerate(self.model["linear_heads"]):
                    heads[h].append(head(cls).float().numpy())
        inverse = np.argsort(np.asarray(order, dtype=int)) if order else np.zeros(0, int)
        return [
            np.concatenate(parts)[inverse] if parts else np.zeros((0, 4 if h < 13 else 2))
            for h, parts in enumerate(heads)
        ]

    def label(self, texts: Sequence[str]) -> list[dict[str, int]]:
        """Per report, {condition: class} with classes BLANK/POSITIVE/NEGATIVE/UNCERTAIN."""
        classes = [lg.argmax(axis=1) for lg in self.logits(texts)]
        return [
            {cond: int(classes[h][i]) for h, cond in enumerate(CONDITIONS)}
            for i in range(len(texts))
        ]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def _read_state_dict(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    try:
        # weights_only: the upstream file is plain dicts of tensors and numbers (model and
        # Adam state), so the safe unpickler reads it and no code in it can run.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # garbage bytes, not a refused object
            msg = f"{path}: not a readable PyTorch checkpoint (corrupt or not made by torch.save)"
            raise DataError(msg) from exc
        raise DataError(
            f"{path}: refused to unpickle (it holds objects other than tensors, and MedLens "
            "loads checkpoints only with torch.load(weights_only=True)); use the original "
            "chexbert.pth or re-save just its model_state_dict"
        ) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, ... for broken files
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from exc
    state = ckpt.get("model_state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not any("linear_heads." in str(k) for k in state):
        raise DataError(
            f"{path}: not a CheXbert checkpoint (expected a dict with 'model_state_dict' "
            "holding bert.* and linear_heads.* weights)"
        )
    # Upstream trained under nn.DataParallel, so every key starts with "module.".
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_labeler(paths: ChexbertPaths | None = None, batch_size: int = 16) -> ChexbertLabeler:
    """Build bert + heads from the local config, then fill every weight from the checkpoint."""
    paths = paths or resolve_paths()
    state = _read_state_dict(paths.checkpoint)
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    try:
        config = BertConfig.from_pretrained(paths.bert_dir, local_files_only=True)
        tokenizer = BertTokenizer.from_pretrained(paths.bert_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        why = _first_line(exc)
        raise ModelNotAvailable(
            f"{paths.bert_dir}: cannot read BERT files ({why}); {_GET_BERT}"
        ) from exc
    hidden = config.hidden_size
    model = torch.nn.ModuleDict(
        {
            "bert": BertModel(config, add_pooling_layer=True),
            "linear_heads": torch.nn.ModuleList(
                [torch.nn.Linear(hidden, 4) for _ in range(13)] + [torch.nn.Linear(hidden, 2)]
            ),
        }
    )
    expected = model.state_dict()
    wrong = [
        k for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]  # fmt: skip
    # Checkpoints saved by transformers 3/4 also hold the position_ids buffer: harmless.
    unexpected = [k for k in state if k not in expected and not k.endswith("position_ids")]
    missing = [k for k in expected if k not in state]
    if wrong or unexpected or missing:
        parts = [
            f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("shape mismatch:", wrong), ("unexpected:", unexpected),
                                ("missing:", missing))
            if keys
        ]  # fmt: skip
        raise DataError(
            f"{paths.checkpoint} does not match CheXbert with the BERT config in "
            f"{paths.bert_dir} ({'; '.join(parts)})"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in expected})
    model.eval()
    return ChexbertLabeler(model, tokenizer, paths.checkpoint, batch_size)
