"""Find job handlers: the built-in ones plus any named as `module:attribute`.

Built-in: `medlens.jobs.handlers` (interpret, followup) when it imports. Extra handler
maps come from `--handlers` options or MEDLENS_JOB_HANDLERS (comma list), e.g.
`medlens.jobs.testing:HANDLERS`; each names a dict {kind: handler} or one callable
whose kind is its `job_kind` attribute.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable

from medlens.errors import ConfigError
from medlens.jobs.context import Handler

log = logging.getLogger(__name__)
ENV_VAR = "MEDLENS_JOB_HANDLERS"


def builtin_handlers() -> dict[str, Handler]:
    try:
        mod = importlib.import_module("medlens.jobs.handlers")
    except ImportError as exc:  # an optional part is missing: report, run the rest
        log.warning("built-in job handlers unavailable: %s", exc)
        return {}
    found = getattr(mod, "HANDLERS", None)
    if isinstance(found, dict):
        return dict(found)
    out: dict[str, Handler] = {}
    for kind in ("interpret", "followup"):
        fn = getattr(mod, f"handle_{kind}", None)
        if callable(fn):
            out[kind] = fn
    return out


def load_spec(spec: str) -> dict[str, Handler]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"Handler spec {spec!r} must look like 'package.module:HANDLERS'.")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Cannot load job handlers {spec!r}: {exc}") from exc
    if isinstance(obj, dict):
        return dict(obj)
    kind = getattr(obj, "job_kind", None)
    if callable(obj) and isinstance(kind, str):
        return {kind: obj}
    raise ConfigError(f"{spec!r} is neither a dict of handlers nor a handler with job_kind.")


def load_handlers(specs: Iterable[str] = (), *, builtin: bool = True) -> dict[str, Handler]:
    handlers = builtin_handlers() if builtin else {}
    env_specs = [s.strip() for s in os.environ.get(ENV_VAR, "").split(",") if s.strip()]
    for spec in [*env_specs, *specs]:
        handlers.update(load_spec(spec))
    return handlers
