"""The model session: one load per model, status, unload, threads, configured ids."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from medlens.config import load_settings
from medlens.errors import ModelNotAvailable, UnknownModel
from medlens.models import loader
from medlens.models.session import (
    DEMO_ENCODER,
    DEMO_GENERATOR,
    ModelSession,
    configured_id,
    configured_ids,
    default_session,
    load_encoder,
)

ENCODER = "medlens/test-medsiglip"
GENERATOR = "medlens/test-medgemma"


@pytest.fixture
def session(tiny_test_models: dict[str, Path]) -> ModelSession:
    pytest.importorskip("torch")
    return ModelSession()


def _slow_builds(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[str]:
    """Make every real load take at least `seconds`; returns the ids loaded, in order."""
    built: list[str] = []
    real = loader.build

    def slow(plan: loader.LoadPlan, settings: Any, **kw: Any) -> Any:
        built.append(plan.record.id)
        time.sleep(seconds)
        return real(plan, settings, **kw)

    monkeypatch.setattr(loader, "build", slow)
    return built


def test_same_id_is_the_same_object_loaded_once(session: ModelSession) -> None:
    settings = load_settings()
    first = session.encoder(ENCODER, settings)
    again, record = session.encoder_for(settings, ENCODER)
    assert again is first and record.id == ENCODER
    assert session.encoder(ENCODER, settings, device="cpu") is first  # same resolved key
    assert session.loads == 1
    [info] = session.status()
    assert (info.id, info.kind, info.device, info.is_test) == (ENCODER, "encoder", "cpu", True)
    assert info.load_seconds >= 0


def test_status_lists_each_loaded_model(session: ModelSession) -> None:
    settings = load_settings()
    assert session.status() == []
    gen = session.generator(GENERATOR, settings)
    enc = session.encoder(ENCODER, settings)
    assert gen is not enc and session.loads == 2
    assert [(m.id, m.kind) for m in session.status()] == [
        (GENERATOR, "generator"), (ENCODER, "encoder")]


def test_unload_one_then_all(session: ModelSession) -> None:
    settings = load_settings()
    enc = session.encoder(ENCODER, settings)
    session.generator(GENERATOR, settings)
    assert session.unload(ENCODER) == 1
    assert [m.id for m in session.status()] == [GENERATOR]
    reloaded = session.encoder(ENCODER, settings)
    assert reloaded is not enc and session.loads == 3  # loaded again after the unload
    assert session.unload("medlens/not-loaded") == 0
    assert session.unload() == 2 and session.status() == []


def test_two_threads_asking_at_once_load_once(
    session: ModelSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    built = _slow_builds(monkeypatch, 0.3)  # both threads arrive while the load runs
    start = threading.Barrier(2)
    got: list[Any] = []

    def ask() -> None:
        start.wait()
        got.append(session.encoder(ENCODER, settings))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(got) == 2 and got[0] is got[1]
    assert built == [ENCODER] and session.loads == 1


def test_a_loaded_model_does_not_wait_for_another_load(
    session: ModelSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    enc = session.encoder(ENCODER, settings)
    _slow_builds(monkeypatch, 1.5)
    slow = threading.Thread(target=session.generator, args=(GENERATOR, settings))
    slow.start()
    time.sleep(0.2)  # the generator load is now under way
    t0 = time.perf_counter()
    assert session.encoder(ENCODER, settings) is enc
    waited = time.perf_counter() - t0
    slow.join(timeout=60)
    assert waited < 1.0 and session.loads == 2


def test_failed_loads_leave_nothing_behind(session: ModelSession) -> None:
    settings = load_settings()
    with pytest.raises(UnknownModel, match="Known ids"):
        session.generator("google/medgemma-99b-it", settings)
    with pytest.raises(UnknownModel, match="not an encoder"):
        session.encoder(GENERATOR, settings)
    with pytest.raises(ModelNotAvailable, match="hf auth login"):
        session.generator("google/medgemma-4b-it", settings)
    assert session.loads == 0 and session.status() == []


def test_none_means_the_configured_model(session: ModelSession) -> None:
    settings = load_settings(generator=GENERATOR, encoder=ENCODER)
    enc = session.encoder(settings=settings)
    assert enc is session.encoder(ENCODER, settings) and enc.info.model_id == ENCODER
    _gen, record = session.generator_for(settings)
    assert record.id == GENERATOR


def test_configured_ids_outside_demo_are_the_settings() -> None:
    settings = load_settings(generator="google/medgemma-27b-it", text_generator="medlens/x")
    assert configured_ids(settings) == ("google/medgemma-27b-it", "google/medsiglip-448")
    assert configured_id(settings, "generator", text=True) == "medlens/x"


def test_demo_runs_test_models_unless_a_test_model_is_chosen() -> None:
    assert configured_ids(load_settings(demo=True)) == (DEMO_GENERATOR, DEMO_ENCODER)
    chosen = load_settings(demo=True, generator=GENERATOR, encoder=ENCODER)
    assert configured_ids(chosen) == (GENERATOR, ENCODER)


def test_module_functions_use_the_process_wide_session(tiny_test_models) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    assert default_session() is default_session()
    enc = load_encoder(ENCODER, load_settings())
    assert default_session().encoder(ENCODER, load_settings()) is enc
    assert ENCODER in [m.id for m in default_session().status()]


def test_importing_the_session_pulls_in_no_torch() -> None:
    code = (
        "import json, sys\nimport medlens.models.session\n"
        "print(json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
