"""Tokenizers for the test models, built in-process (no downloads).

A small BPE GemmaTokenizer carrying Gemma 3's special/control tokens and chat template,
Gemma 3's control tokens added to the real 270M tokenizer, and a sentencepiece model
trained on the fly for the SigLIP test encoder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medlens.models.chat_template import GEMMA3_CHAT_TEMPLATE

# English-ish text the tiny tokenizers are trained on (no medical meaning intended).
_CORPUS = (
    "The chest radiograph shows clear lungs without focal consolidation. "
    "There is no pleural effusion or pneumothorax. The heart size is normal. "
    "Findings: mild cardiomegaly with small bilateral effusions and basal atelectasis. "
    "Impression: no acute cardiopulmonary process. Compared with the prior study, "
    "the opacity in the right lower lobe has improved. Support devices are unchanged. "
    "A chest X-ray with pneumonia. A chest X-ray with a fracture. A normal chest X-ray. "
    "The patient is a fifty year old with cough and fever for three days. "
)


# --- tokenizers ----------------------------------------------------------------
# Gemma 3's chat and image control tokens, in their vocabulary order.
GEMMA_CONTROLS = (
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)


def gemma_small_tokenizer() -> Any:
    """A ~1k-token BPE GemmaTokenizer holding Gemma's special tokens at Gemma's names."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    trainer_tok.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=[], show_progress=False)
    trainer_tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    trained = json.loads(trainer_tok.to_str())["model"]
    vocab: dict[str, int] = {}
    for tok in specials:
        vocab[tok] = len(vocab)
    for i in range(256):
        vocab[f"<0x{i:02X}>"] = len(vocab)
    # The thinking markers are ordinary vocabulary entries in Gemma's tokenizer.
    for tok in ("<unused94>", "<unused95>"):
        vocab[tok] = len(vocab)
    for tok in sorted(trained["vocab"], key=trained["vocab"].get):
        if tok not in vocab:
            vocab[tok] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    for tok in GEMMA_CONTROLS:
        vocab[tok] = len(vocab)
    tok = GemmaTokenizer(vocab=vocab, merges=merges)
    add_gemma_controls(tok)
    return tok


def add_gemma_controls(tok: Any) -> None:
    """Register Gemma 3's control tokens (ids taken from the vocab when present)."""
    from tokenizers import AddedToken

    tok.add_special_tokens(
        {
            "additional_special_tokens": [
                AddedToken(t, special=True, normalized=False) for t in GEMMA_CONTROLS
            ]
        }
    )
    # Named model-specific tokens (saved in tokenizer_config.json, as in Gemma 3's):
    # Gemma3Processor reads tok.boi_token / eoi_token / image_token.
    tok._set_model_specific_special_tokens(
        {
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        }
    )
    tok.chat_template = GEMMA3_CHAT_TEMPLATE
    tok.padding_side = "left"


def siglip_tokenizer(work: Path) -> Any:
    import io

    import sentencepiece as spm
    from transformers import SiglipTokenizer

    model = io.BytesIO()
    sentences: Iterable[str] = [s.strip() + "." for s in _CORPUS.split(".") if s.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences) * 8),
        model_writer=model,
        vocab_size=200,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=-1,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp_path = work / "spiece.model"
    sp_path.write_bytes(model.getvalue())
    return SiglipTokenizer(vocab_file=str(sp_path), model_max_length=64)
