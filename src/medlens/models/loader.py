"""Load a Generator / Encoder for a registry record: pure functions, no cache.

Resolution: registry record (or ad-hoc record for a path) -> source scheme -> backend
factory ("module:function" in backends.SCHEME_LOADERS) -> loaded model. `plan_load`
decides what would be loaded (and so the cache key); `build` loads it. Missing weights
raise ModelNotAvailable saying how to get them; test models are built on first use.
The one cache of loaded models is `medlens.models.session.ModelSession`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medlens.errors import MedLensError, ModelNotAvailable, SourceNotImplemented, UnknownModel
from medlens.models import backends
from medlens.models.hub import checkpoint_path, missing_message, weights_hash
from medlens.models.local_info import is_test_model_dir
from medlens.models.registry import ModelKind, ModelRecord, load_registry, serves_as

LoadKey = tuple[str, str, str, str, str]  # (id, source, kind, device, dtype[+quantize])


@dataclass(frozen=True)
class LoadPlan:
    """What `build` will load: the record, its backend factory, device and dtype."""

    record: ModelRecord
    kind: ModelKind
    factory: Callable[..., Any]
    device: str  # "" when the backend chooses (gguf, openai)
    dtype: str
    key: LoadKey


def resolve_record(model: str | ModelRecord, settings: Any, kind: ModelKind) -> ModelRecord:
    if isinstance(model, ModelRecord):
        record = model
    else:
        record = load_registry(settings).resolve(model, kind=kind)
    if not serves_as(record, kind):
        raise UnknownModel(f"Model {record.id!r} is an {record.kind}, not an {kind}.")
    return record


def _factory(scheme: str, kind: str) -> Any:
    target = backends.SCHEME_LOADERS.get(scheme, {}).get(kind)
    if target is None:
        raise SourceNotImplemented(f"{scheme}: sources cannot provide an {kind} (yet).")
    backend = backends.SCHEME_BACKEND[scheme]
    backends.require(backend)
    module_name, _, func = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise SourceNotImplemented(
                f"{scheme}: sources are not implemented yet in this MedLens version "
                "(use an hf: id or a local checkpoint folder)."
            ) from exc
        raise
    return getattr(module, func)


def _test_models_dir(settings: Any) -> Path:
    return Path(settings.test_models_dir).expanduser()


def _local_weights(record: ModelRecord, settings: Any, build_test_models: bool) -> Path:
    path = checkpoint_path(record)
    if path is not None:
        return path
    src = record.parsed_source
    in_test_dir = src.scheme == "path" and _is_within(src.path, _test_models_dir(settings))
    if record.is_test and in_test_dir and build_test_models:
        from medlens.models.quiet import quiet_third_party
        from medlens.models.testmodels import REALTEXT_NAMES, ensure_test_models

        quiet_third_party()  # building one (the first demo run) saves with shard bars
        try:
            ensure_test_models(settings, realtext=src.path.name in REALTEXT_NAMES)
        except MedLensError as exc:
            raise ModelNotAvailable(missing_message(record, str(exc))) from exc
        path = checkpoint_path(record)
        if path is not None:
            return path
    raise ModelNotAvailable(missing_message(record))


def local_weights(record: ModelRecord, settings: Any) -> Path:
    """The local checkpoint of `record` (test models built on first use); for training."""
    return _local_weights(record, settings, True)


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.expanduser().resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _device_dtype(
    record: ModelRecord, settings: Any, device: str | None, dtype: str | None
) -> tuple[str, str]:
    from medlens.models.backends.torch_runtime import (
        check_dtype_name,
        resolve_device,
        resolve_dtype,
    )

    requested_dtype = dtype or getattr(settings, "dtype", "auto") or "auto"
    check_dtype_name(requested_dtype)  # refuse fp16 before anything heavy happens
    dev = resolve_device(device or getattr(settings, "device", "auto") or "auto")
    return dev, resolve_dtype(
        requested_dtype, device=dev, record_dtype=record.dtype, is_test=record.is_test
    )


def plan_load(
    model: str | ModelRecord,
    settings: Any,
    kind: ModelKind,
    *,
    device: str | None = None,
    dtype: str | None = None,
) -> LoadPlan:
    """Resolve the record, backend, device and dtype; load nothing (fails fast)."""
    record = resolve_record(model, settings, kind)
    if record.kind == "adapter":  # the base's plan, keyed by the adapter (models/adapters.py)
        from medlens.models import adapters

        base = adapters.base_record(record, settings)
        adapters.check_backend(record, base)
        base_plan = plan_load(base, settings, kind, device=device, dtype=dtype)
        return adapters.adapter_plan(record, base_plan)
    scheme = record.parsed_source.scheme
    if dtype is not None or getattr(settings, "dtype", "auto") != "auto":
        from medlens.models.backends.torch_runtime import check_dtype_name

        check_dtype_name(dtype or settings.dtype)
    factory = _factory(scheme, kind)
    if scheme in ("gguf", "openai", "scripted"):
        # Other backends choose their own device/dtype; they get the record and settings.
        return LoadPlan(record, kind, factory, "", "", (record.id, record.source, kind, "", ""))
    dev, dt = _device_dtype(record, settings, device, dtype)
    key_dtype = dt
    if kind == "generator":
        from medlens.models.fastpath.options import parse_options

        # int8/int4 (record option or MEDLENS_QUANTIZE) is a different loaded model.
        quantize = parse_options(record.options).quantize
        if quantize != "none":
            key_dtype = f"{dt}+{quantize}"
    key = (record.id, record.source, kind, dev, key_dtype)
    return LoadPlan(record, kind, factory, dev, dt, key)


def build(plan: LoadPlan, settings: Any, *, build_test_models: bool = True) -> Any:
    """Load what `plan` names (slow: reads weights). Callers cache the result."""
    record = plan.record
    if record.kind == "adapter":
        from medlens.models.adapters import build_adapter

        return build_adapter(plan, settings, build_test_models)
    if not plan.device:
        return plan.factory(record, settings)
    path = _local_weights(record, settings, build_test_models)
    if not record.is_test and path.is_dir() and is_test_model_dir(path):
        # Weights built by make-test are labelled as a test model whatever id they
        # were reached by: their output must never pass for a medical model's.
        record = replace(record, is_test=True)
    whash = weights_hash(path, Path(settings.data_dir).expanduser())
    return plan.factory(record, path, device=plan.device, dtype=plan.dtype, weights_hash=whash)
