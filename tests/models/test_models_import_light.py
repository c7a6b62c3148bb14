"""`import medlens` (and the CLI entry, registry, hub, loader) must not pull in torch."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "llama_cpp")
LIGHT_MODULES = [
    "medlens", "medlens.cli.main", "medlens.models.registry", "medlens.models.hub",
    "medlens.models.thinking", "medlens.models.loader",
    "medlens.models.backends", "medlens.models.testmodels", "medlens.cli.models",
]


def test_imports_are_light() -> None:
    # One interpreter, modules imported in order: the first that pulls torch is named.
    code = (
        "import importlib, json, sys\n"
        f"out = {{}}\nfor m in {LIGHT_MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        f"    out[m] = [h for h in {HEAVY!r} if h in sys.modules]\n"
        "from medlens.models.backends import backend_status\n"
        "s = backend_status()\n"
        "out['status'] = [s['transformers'][0], s['transformers'][1], 'torch' in sys.modules]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for module in LIGHT_MODULES:
        assert out[module] == [], f"importing {module} pulled in {out[module]}"
    assert out["status"] == [True, "hf", False]
