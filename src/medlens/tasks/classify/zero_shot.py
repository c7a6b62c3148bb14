"""Zero-shot classification with an image/text encoder (MedSigLIP) and label sets as data.

The one zero-shot implementation in MedLens: `medlens classify`, the evaluation, the
interpreter's finding scores and its image gate (`image-kind` set) all come through
`zero_shot` (images) or `zero_shot_embeddings` (embeddings already computed).

A label set is a TOML (or JSON) file: each label has several positive prompt templates
and, for multi-label sets, negative ones. Prompts of a label are embedded, each
L2-normalised, averaged and re-normalised (prompt ensembling in embedding space).

Scores use the encoder's own learned `logit_scale` and `logit_bias`:
- multilabel (findings co-occur): per label, softmax over the pair
  (scale·cos(img, pos) + bias, scale·cos(img, neg) + bias) - CheXzero's positive-vs-negative
  prompt scheme. A label without negative prompts falls back to SigLIP's own sigmoid
  σ(scale·cos + bias).
- multiclass (exactly one applies): softmax over labels of scale·cos(img, label) + bias
  (the MedSigLIP model card's zero-shot; one prompt per label gives exactly the softmax
  of SiglipModel's own `logits_per_image`).

Text embeddings are cached per (encoder identity, label-set fingerprint), so a label set
edited on disk is re-embedded even if its declared version was not bumped.
"""

from __future__ import annotations

import hashlib
import json
import threading
import tomllib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from medlens.errors import ConfigError
from medlens.tasks.encoding import encoder_id

if TYPE_CHECKING:
    from medlens.models.protocols import Encoder, ImagePart

Mode = Literal["multilabel", "multiclass"]
_PLACEHOLDER = "{text}"


@dataclass(frozen=True)
class Label:
    name: str
    positive: tuple[str, ...]
    negative: tuple[str, ...] = ()
    # Column names in labelled CSVs that mean this label (e.g. NIH "Effusion").
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSet:
    name: str
    version: str
    mode: Mode
    labels: tuple[Label, ...]
    description: str = ""
    modality: str = ""
    source: str = ""  # "builtin:cxr" or the file path
    fingerprint: str = field(default="", compare=False)

    @property
    def label_names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    def label(self, name: str) -> Label:
        for lab in self.labels:
            if lab.name == name:
                return lab
        raise ConfigError(f"Label set {self.name!r} has no label {name!r}.")


# --- loading ------------------------------------------------------------------------
def builtin_label_sets() -> list[str]:
    """Names of the label sets shipped with MedLens."""
    root = resources.files("medlens.tasks.classify.labelsets")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_label_set(name_or_path: str) -> LabelSet:
    """A built-in label set by name (`cxr`, `dermatology`, ...) or a TOML/JSON file."""
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() in (".toml", ".json") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"Label set file {path} not found.")
        text = path.read_text("utf-8")
        source = str(path)
        is_json = path.suffix.lower() == ".json"
    else:
        res = resources.files("medlens.tasks.classify.labelsets").joinpath(f"{name_or_path}.toml")
        if not res.is_file():
            known = ", ".join(builtin_label_sets())
            raise ConfigError(
                f"Unknown label set {name_or_path!r}. Built-in sets: {known}; "
                "or give the path of a .toml/.json label-set file."
            )
        text = res.read_text("utf-8")
        source = f"builtin:{name_or_path}"
        is_json = False
    try:
        data = json.loads(text) if is_json else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if is_json else "TOML"
        raise ConfigError(f"Label set {source}: not valid {kind}: {exc}") from exc
    return parse_label_set(data, source=source)


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings.")
    return tuple(v.strip() for v in value)


def _expand(templates: tuple[str, ...], text: str) -> tuple[str, ...]:
    out: list[str] = []
    for tpl in templates:
        prompt = tpl.replace(_PLACEHOLDER, text)
        if prompt not in out:
            out.append(prompt)
    return tuple(out)


def parse_label_set(data: dict[str, Any], *, source: str = "") -> LabelSet:
    """Validate a label-set table (the documented file format) into a LabelSet."""
    where = f"Label set {source or data.get('name', '?')}"
    for key in ("name", "version", "mode", "labels"):
        if key not in data:
            raise ConfigError(f"{where}: missing {key!r}.")
    mode = data["mode"]
    if mode not in ("multilabel", "multiclass"):
        raise ConfigError(f"{where}: mode must be 'multilabel' or 'multiclass', not {mode!r}.")
    unknown = set(data) - {
        "name",
        "version",
        "mode",
        "labels",
        "description",
        "modality",
        "templates",
    }
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}.")
    defaults = data.get("templates", {}) or {}
    default_pos = _str_list(defaults.get("positive"), f"{where} templates.positive")
    default_neg = _str_list(defaults.get("negative"), f"{where} templates.negative")
    labels: list[Label] = []
    raw_labels = data["labels"]
    if not isinstance(raw_labels, list) or not raw_labels:
        raise ConfigError(f"{where}: 'labels' must be a non-empty list of tables.")
    for i, raw in enumerate(raw_labels):
        lw = f"{where} label #{i + 1}"
        if not isinstance(raw, dict) or not str(raw.get("name", "")).strip():
            raise ConfigError(f"{lw}: each label needs a 'name'.")
        extra = set(raw) - {
            "name",
            "text",
            "positive",
            "negative",
            "aliases",
            "use_default_templates",
        }
        if extra:
            raise ConfigError(f"{lw}: unknown key(s) {sorted(extra)}.")
        name = str(raw["name"]).strip()
        texts = _str_list(raw.get("text"), f"{lw} text") or (name.lower().replace("_", " "),)
        use_defaults = bool(raw.get("use_default_templates", True))
        pos_t = (default_pos if use_defaults else ()) + _str_list(raw.get("positive"), lw)
        neg_t = (default_neg if use_defaults else ()) + _str_list(raw.get("negative"), lw)
        positive = tuple(p for t in texts for p in _expand(pos_t, t))
        negative = tuple(p for t in texts for p in _expand(neg_t, t))
        positive = tuple(dict.fromkeys(positive))
        negative = tuple(dict.fromkeys(negative))
        if not positive:
            raise ConfigError(f"{lw} ({name}): no positive prompts (templates or 'positive').")
        labels.append(Label(name, positive, negative, _str_list(raw.get("aliases"), lw)))
    names = [lab.name for lab in labels]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: duplicate label names.")
    if mode == "multiclass" and len(labels) < 2:
        raise ConfigError(f"{where}: a multiclass set needs at least two labels.")
    canonical = json.dumps(
        {
            "name": data["name"],
            "version": str(data["version"]),
            "mode": mode,
            "labels": [[lab.name, lab.positive, lab.negative] for lab in labels],
        },
        sort_keys=True,
    )
    return LabelSet(
        name=str(data["name"]),
        version=str(data["version"]),
        mode=mode,
        labels=tuple(labels),
        description=str(data.get("description", "")),
        modality=str(data.get("modality", "")),
        source=source,
        fingerprint=hashlib.sha256(canonical.encode()).hexdigest()[:16],
    )


# --- text embeddings ----------------------------------------------------------------
@dataclass(frozen=True)
class LabelEmbeddings:
    """Per label: averaged positive prompt embedding, and negative (or None)."""

    positive: np.ndarray  # (L, dim) float32, rows L2-normalised
    negative: np.ndarray  # (L, dim); rows of zeros where a label has no negatives
    has_negative: np.ndarray  # (L,) bool


def average_prompts(embeddings: np.ndarray) -> np.ndarray:
    """Mean of L2-normalised rows, re-normalised (prompt ensembling)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    mean = emb.mean(axis=0)
    norm = np.linalg.norm(mean)
    if norm == 0:
        raise ConfigError("Prompt embeddings cancel out; check the label's templates.")
    return (mean / norm).astype(np.float32)


_CACHE: OrderedDict[tuple[str, str, str], LabelEmbeddings] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 32


def label_embeddings(encoder: Encoder, label_set: LabelSet) -> LabelEmbeddings:
    """Embed every prompt of the set once per (encoder, label-set fingerprint)."""
    key = (encoder_id(encoder), label_set.name, label_set.fingerprint or label_set.version)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    prompts: list[str] = []
    for lab in label_set.labels:
        prompts.extend(lab.positive)
        prompts.extend(lab.negative)
    unique = list(dict.fromkeys(prompts))
    emb = np.asarray(encoder.embed_texts(unique), dtype=np.float32)
    if emb.shape != (len(unique), encoder.dim):
        raise ConfigError(
            f"Encoder returned text embeddings of shape {emb.shape}, expected "
            f"({len(unique)}, {encoder.dim})."
        )
    row = {p: emb[i] for i, p in enumerate(unique)}
    pos = np.stack(
        [average_prompts(np.stack([row[p] for p in lab.positive])) for lab in label_set.labels]
    )
    neg = np.zeros_like(pos)
    has_neg = np.zeros(len(label_set.labels), dtype=bool)
    for i, lab in enumerate(label_set.labels):
        if lab.negative:
            neg[i] = average_prompts(np.stack([row[p] for p in lab.negative]))
            has_neg[i] = True
    result = LabelEmbeddings(pos, neg, has_neg)
    with _CACHE_LOCK:
        _CACHE[key] = result
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return result


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


# --- scoring --------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # numerically stable logistic


def score_embeddings(
    image_embeddings: np.ndarray,
    label_emb: LabelEmbeddings,
    mode: Mode,
    *,
    logit_scale: float,
    logit_bias: float,
) -> np.ndarray:
    """(N, L) probabilities from L2-normalised image embeddings."""
    img = np.asarray(image_embeddings, dtype=np.float64)
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    pos_logit = logit_scale * (img @ label_emb.positive.T.astype(np.float64)) + logit_bias
    if mode == "multiclass":
        z = pos_logit - pos_logit.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    neg_logit = logit_scale * (img @ label_emb.negative.T.astype(np.float64)) + logit_bias
    # softmax over (pos, neg) == sigmoid(pos - neg); the bias cancels in the pair.
    paired = _sigmoid(pos_logit - neg_logit)
    single = _sigmoid(pos_logit)
    return np.where(label_emb.has_negative[None, :], paired, single)


def zero_shot_embeddings(
    encoder: Encoder, image_embeddings: np.ndarray, label_set: LabelSet
) -> list[dict[str, float]]:
    """Zero-shot from image embeddings already computed (e.g. stored in the library)."""
    probs = score_embeddings(
        image_embeddings,
        label_embeddings(encoder, label_set),
        label_set.mode,
        logit_scale=float(encoder.logit_scale),
        logit_bias=float(encoder.logit_bias),
    )
    names = label_set.label_names
    return [{n: float(p) for n, p in zip(names, row, strict=True)} for row in probs]


def zero_shot(
    encoder: Encoder, images: Sequence[ImagePart], label_set: LabelSet
) -> list[dict[str, float]]:
    """Per image {label: probability} (see module docstring for the scoring rule)."""
    if not images:
        return []
    emb = np.asarray(encoder.embed_images(images), dtype=np.float32)
    return zero_shot_embeddings(encoder, emb, label_set)
