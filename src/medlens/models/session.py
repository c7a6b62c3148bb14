"""One model session per process: generators and encoders by registry id, loaded once.

The server (jobs, chat, status page), the CLI and evaluations all get models here, so a
model is read from disk once per process whoever asks first; no other module caches
models. `default_session()` is the process-wide session; tests may build their own.
Loading itself (records, backends, device, dtype) is `medlens.models.loader`.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from medlens.models import loader
from medlens.models.registry import ModelKind, ModelRecord, load_registry

if TYPE_CHECKING:
    from medlens.config import Settings

# Demo mode (`medlens serve --demo`) runs these unless a test model is configured.
DEMO_GENERATOR = "medlens/demo"  # scripted: instant, every answer labelled DEMO OUTPUT
DEMO_ENCODER = "medlens/test-medsiglip"


@dataclass(frozen=True)
class LoadedModel:
    """One model held by a session (what `status()` lists)."""

    id: str
    kind: str
    source: str
    device: str  # "" when the backend chooses (gguf, openai)
    dtype: str
    is_test: bool
    load_seconds: float


class LoadOptions(TypedDict, total=False):
    """How a generator or encoder loads; each left out takes the default."""

    device: str | None  # None: the settings' device
    dtype: str | None  # None: the settings' dtype
    build_test_models: bool  # True: build a missing test model on disk


def _is_test_record(model: str, settings: Settings) -> bool:
    registry = load_registry(settings)
    return model in registry and registry.get(model).is_test


def configured_id(settings: Settings, kind: ModelKind, *, text: bool = False) -> str:
    """The model these settings name for `kind` (text: the text-only generator).

    Demo mode keeps an explicitly chosen test model (tests pick the tiniest one) and
    otherwise uses the demo generator (instant, labelled answers) and the test encoder.
    """
    if kind == "encoder":
        model, demo = settings.encoder, DEMO_ENCODER
    else:
        model, demo = (settings.text_model if text else settings.generator), DEMO_GENERATOR
    if settings.demo and not _is_test_record(model, settings):
        return demo
    return model


def configured_ids(settings: Settings) -> tuple[str, str]:
    """(generator id, encoder id) that these settings run."""
    return configured_id(settings, "generator"), configured_id(settings, "encoder")


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from medlens.config import load_settings

    return load_settings()


class ModelSession:
    """Loaded models keyed by (id, source, kind, device, dtype); thread-safe.

    Two threads asking for the same model get the same object, loaded once. Loads run
    one at a time (they are memory-bound and may build test models on disk); a lookup of
    an already-loaded model never waits for another model's load.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _models
        self._load_lock = threading.Lock()  # one load at a time
        self._models: dict[loader.LoadKey, tuple[Any, LoadedModel]] = {}
        self.loads = 0  # models actually loaded (not cache hits) since creation

    def record(
        self,
        settings: Settings | None,
        model: str | ModelRecord | None,
        kind: ModelKind,
        *,
        text: bool = False,
    ) -> ModelRecord:
        """The registry record for `model` (None: the configured one); loads nothing."""
        settings = _settings(settings)
        return loader.resolve_record(
            model or configured_id(settings, kind, text=text), settings, kind
        )

    def generator(
        self,
        model: str | ModelRecord | None = None,
        settings: Settings | None = None,
        *,
        text: bool = False,
        **load: Unpack[LoadOptions],
    ) -> Any:
        """A protocols.Generator for a registry id, a path, a record or (None) the
        configured generator; loaded on first use."""
        return self._get("generator", model, settings, text, load)

    def encoder(
        self,
        model: str | ModelRecord | None = None,
        settings: Settings | None = None,
        **load: Unpack[LoadOptions],
    ) -> Any:
        """A protocols.Encoder for a registry id, a path, a record or (None) the
        configured encoder; loaded on first use."""
        return self._get("encoder", model, settings, False, load)

    def generator_for(
        self, settings: Settings, model: str | None = None, *, text: bool = False
    ) -> tuple[Any, ModelRecord]:
        """The generator named by `model` (None: the configured one) and its record."""
        record = self.record(settings, model, "generator", text=text)
        return self.generator(record, settings), record

    def encoder_for(self, settings: Settings, model: str | None = None) -> tuple[Any, ModelRecord]:
        """The encoder named by `model` (None: the configured one) and its record."""
        record = self.record(settings, model, "encoder")
        return self.encoder(record, settings), record

    def status(self) -> list[LoadedModel]:
        """The models this session holds, in load order."""
        with self._lock:
            return [info for _model, info in self._models.values()]

    def unload(self, model: str | None = None) -> int:
        """Drop `model` (a registry id; every device/dtype of it) or, with None, every
        model; returns how many were dropped. Their memory goes when no caller holds them."""
        with self._lock:
            gone = [k for k, (_m, info) in self._models.items() if model in (None, info.id)]
            for key in gone:
                del self._models[key]
        if gone:
            gc.collect()
        return len(gone)

    def _get(
        self,
        kind: ModelKind,
        model: str | ModelRecord | None,
        settings: Settings | None,
        text: bool,
        load: LoadOptions,
    ) -> Any:
        settings = _settings(settings)
        record = self.record(settings, model, kind, text=text)
        plan = loader.plan_load(
            record, settings, kind, device=load.get("device"), dtype=load.get("dtype")
        )
        with self._lock:
            hit = self._models.get(plan.key)
        if hit is not None:
            return hit[0]
        with self._load_lock:
            with self._lock:
                hit = self._models.get(plan.key)
            if hit is not None:  # another thread loaded it while this one waited
                return hit[0]
            start = time.perf_counter()
            loaded = loader.build(
                plan, settings, build_test_models=load.get("build_test_models", True)
            )
            info = LoadedModel(
                id=record.id,
                kind=kind,
                source=record.source,
                device=plan.device,
                dtype=plan.key[4],
                is_test=bool(getattr(getattr(loaded, "info", None), "is_test", record.is_test)),
                load_seconds=round(time.perf_counter() - start, 3),
            )
            with self._lock:
                self._models[plan.key] = (loaded, info)
                self.loads += 1
            return loaded


_DEFAULT = ModelSession()


def default_session() -> ModelSession:
    """The process-wide session (server, worker, CLI and evaluations share it)."""
    return _DEFAULT


def load_generator(
    model: str | ModelRecord | None = None, settings: Settings | None = None, **options: Any
) -> Any:
    """`default_session().generator(...)`: a Generator, loaded once per process."""
    return _DEFAULT.generator(model, settings, **options)


def load_encoder(
    model: str | ModelRecord | None = None, settings: Settings | None = None, **options: Any
) -> Any:
    """`default_session().encoder(...)`: an Encoder, loaded once per process."""
    return _DEFAULT.encoder(model, settings, **options)


def unload_all() -> None:
    """Forget every model the process-wide session holds (tests, memory pressure)."""
    _DEFAULT.unload()
