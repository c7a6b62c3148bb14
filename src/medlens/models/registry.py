"""The model registry: records as data (builtin_models.toml + user config entries).

A record says what a model is (kind, modalities), where it comes from (source), how to
feed it (preprocess, prompt format, dtype). Adding a model needs no code.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from medlens.errors import ConfigError, UnknownModel
from medlens.models.sources import Source, parse_source

ModelKind = Literal["generator", "encoder"]
# "adapter": a LoRA adapter (medlens finetune) served on its base as a generator; its
# options["adapter"] names the base by id, revision and weights hash.
RecordKind = Literal["generator", "encoder", "adapter"]
PadValue = Literal["background", "zero"]


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes model input. One implementation (imaging.preprocess) for all."""

    size: int
    pad_to_square: bool = True
    # "background": the image's own background (darkest border level for X-rays);
    # "zero": black, as Google's MedSigLIP pipeline does.
    pad_value: PadValue = "background"
    resample: Literal["bilinear", "bicubic", "lanczos"] = "bilinear"
    antialias: bool = True
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelRecord:
    id: str
    kind: RecordKind
    source: str
    revision: str = "main"
    modalities: tuple[str, ...] = ("text",)
    prompt_format: str = "medgemma-v1"
    dtype: str = "bfloat16"
    context_length: int = 8192
    gated: bool = False
    thinking: bool = False
    is_test: bool = False
    description: str = ""
    preprocess: PreprocessSpec | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def parsed_source(self) -> Source:
        return parse_source(self.source)

    @property
    def accepts_images(self) -> bool:
        return "image" in self.modalities

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = {f for f in ModelRecord.__dataclass_fields__}


def record_from_dict(data: dict[str, Any], *, test_models_dir: Path | None = None) -> ModelRecord:
    """Build a record from a TOML/JSON table; unknown keys are an error (typos matter)."""
    data = dict(data)
    unknown = set(data) - _FIELDS
    if unknown:
        raise ConfigError(f"Unknown model record field(s) {sorted(unknown)} in {data.get('id')!r}.")
    for key in ("id", "kind", "source"):
        if not data.get(key):
            raise ConfigError(f"Model record is missing {key!r}: {data}")
    if data["kind"] not in ("generator", "encoder", "adapter"):
        raise ConfigError(f"Model {data['id']!r}: kind must be generator, encoder or adapter.")
    if data["kind"] == "adapter" and not (data.get("options") or {}).get("adapter", {}).get(
        "base"
    ):
        raise ConfigError(f"Adapter {data['id']!r} needs options.adapter.base (its base id).")
    pre = data.pop("preprocess", None)
    if pre is not None and not isinstance(pre, PreprocessSpec):
        try:
            pre = PreprocessSpec(
                **{
                    **pre,
                    "mean": tuple(pre.get("mean", (0.5,) * 3)),
                    "std": tuple(pre.get("std", (0.5,) * 3)),
                }
            )
        except TypeError as exc:
            raise ConfigError(f"Model {data['id']!r}: bad preprocess table: {exc}") from exc
    if test_models_dir is not None:
        data["source"] = data["source"].replace("{test_models}", str(test_models_dir))
    data["modalities"] = tuple(data.get("modalities", ("text",)))
    record = ModelRecord(preprocess=pre, **data)
    parse_source(record.source)  # fail early on a malformed source
    return record


def builtin_records(test_models_dir: Path) -> list[ModelRecord]:
    text = resources.files("medlens.models").joinpath("builtin_models.toml").read_text("utf-8")
    return [
        record_from_dict(table, test_models_dir=test_models_dir)
        for table in tomllib.loads(text)["models"]
    ]


class Registry:
    """Built-in records overlaid by user entries (same id replaces, fields merge)."""

    def __init__(self, records: list[ModelRecord]) -> None:
        self._records: dict[str, ModelRecord] = {}
        for rec in records:
            self._records[rec.id] = rec

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._records.values())

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._records

    def get(self, model_id: str) -> ModelRecord:
        try:
            return self._records[model_id]
        except KeyError:
            known = ", ".join(sorted(self._records))
            raise UnknownModel(
                f"Unknown model {model_id!r}. Known ids: {known}. "
                "Or pass a local checkpoint folder / file with --model PATH."
            ) from None

    def resolve(self, model: str, *, kind: ModelKind | None = None) -> ModelRecord:
        """A registry id, or a path / source string made into an ad-hoc record."""
        if model in self._records:
            rec = self._records[model]
        else:
            try:
                source = parse_source(model)
            except ConfigError:
                self.get(model)  # raises UnknownModel listing the known ids
                raise
            if source.scheme == "hf" and not Path(model).exists() and ":" not in model:
                self.get(model)  # an unknown bare id: say so rather than guess
            rec = adhoc_record(source, kind=kind or "generator")
        if kind is not None and not serves_as(rec, kind):
            raise UnknownModel(f"Model {rec.id!r} is an {rec.kind}, not an {kind}.")
        return rec


def serves_as(record: ModelRecord, kind: ModelKind) -> bool:
    """Whether `record` can be loaded as `kind` (an adapter runs as a generator)."""
    return record.kind == kind or (record.kind == "adapter" and kind == "generator")


def adhoc_record(source: Source, *, kind: ModelKind) -> ModelRecord:
    """A record for a model given only by location; preprocessing read from its config."""
    from medlens.models.local_info import guess_record_fields

    fields = guess_record_fields(source, kind)
    return ModelRecord(id=str(source), kind=kind, source=str(source), **fields)


def merge_user_entry(
    base: ModelRecord | None, entry: dict[str, Any], test_models_dir: Path
) -> ModelRecord:
    if base is None:
        return record_from_dict(entry, test_models_dir=test_models_dir)
    merged = {k: v for k, v in base.to_dict().items()}
    if isinstance(entry.get("preprocess"), dict) and merged.get("preprocess"):
        merged["preprocess"] = {**merged["preprocess"], **entry["preprocess"]}
    merged.update({k: v for k, v in entry.items() if k != "preprocess"})
    return record_from_dict(merged, test_models_dir=test_models_dir)


def load_registry(settings: Any | None = None) -> Registry:
    """Registry for these settings: built-ins, then `settings.models` entries."""
    if settings is None:
        from medlens.config import load_settings

        settings = load_settings()
    test_dir = settings.test_models_dir
    records = {r.id: r for r in builtin_records(test_dir)}
    for entry in settings.models:
        if "id" not in entry:
            raise ConfigError(f"Model entry without id in config: {entry}")
        records[entry["id"]] = merge_user_entry(records.get(entry["id"]), entry, test_dir)
    return Registry(list(records.values()))
