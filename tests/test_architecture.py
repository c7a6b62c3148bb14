"""The package's shape: which layer may import which, what stays torch-free, how big code gets.

The import graph is read from the source with `ast` (no module is imported), so it sees
every import: top-level, inside functions (lazy) and under `if TYPE_CHECKING:`.
Layers, lowest first: imaging → models → tasks → store/jobs → server/cli; evaluation sits
beside the top and nothing in the serving path imports it.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "medlens"

# Upper layers and side packages that a lower layer must never reach.
_TOP = ("medlens.server", "medlens.cli", "medlens.evaluation", "medlens.training")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "medlens.imaging": ("medlens.models", "medlens.tasks", "medlens.store", "medlens.jobs", *_TOP),
    "medlens.models": ("medlens.tasks", "medlens.store", "medlens.jobs", *_TOP),
    "medlens.tasks": ("medlens.store", "medlens.jobs", *_TOP),
    "medlens.store": ("medlens.imaging", "medlens.models", "medlens.tasks", "medlens.jobs", *_TOP),
    "medlens.jobs": _TOP,
    # PACS/EHR integration sits beside jobs: it feeds intake and delivers results.
    "medlens.integrations": _TOP,
    "medlens.evaluation": ("medlens.server", "medlens.cli", "medlens.jobs"),
    "medlens.server": ("medlens.cli", "medlens.evaluation", "medlens.training"),
    # Fine-tuning sits beside evaluation (it reuses probe training) and serves nothing.
    "medlens.training": ("medlens.server", "medlens.cli", "medlens.jobs", "medlens.store"),
}
# Crossings the code needs, each to a leaf module that imports nothing from the importer's
# package (so no cycle can run through it): the case library keeps its own SQLite tables
# and de-identified images with the store's migration runner and blob store; the store
# persists the typed interpretation result.
ALLOWED: dict[str, tuple[str, ...]] = {
    "medlens.tasks": ("medlens.store.blobs", "medlens.store.migrate"),
    "medlens.store": ("medlens.tasks.interpret.result",),
}
CORE = ("medlens", "medlens.config", "medlens.errors", "medlens.disclaimer")
# Modules that exist to run torch; everything else must import without it.
HEAVY_BY_DESIGN = (
    "medlens.models.fastpath",
    "medlens.models.backends.torch_runtime",
    "medlens.models.backends.transformers_",
)
HEAVY = ("torch", "transformers", "llama_cpp", "faiss")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
FUNCTION_SIZE_PACKAGES = ("tasks", "jobs", "server")


@functools.cache
def modules() -> dict[str, Path]:
    """Dotted module name → source file, for every module under src/medlens."""
    out: dict[str, Path] = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def read_imports(path: Path, name: str, known: set[str] | dict[str, Path]) -> set[str]:
    """The medlens modules module `name` (source `path`) imports anywhere, resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            # `from medlens.x import y` imports module medlens.x.y when y is one.
            found.update(
                f"{target}.{alias.name}"
                for alias in node.names
                if f"{target}.{alias.name}" in known
            )
    return {m for m in found if m == "medlens" or m.startswith("medlens.")}


@functools.cache
def imports_of(name: str) -> frozenset[str]:
    return frozenset(read_imports(modules()[name], name, modules()))


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_violations() -> list[str]:
    bad = []
    for name in modules():
        for layer, forbidden in FORBIDDEN.items():
            if not _within(name, layer):
                continue
            for target in sorted(imports_of(name)):
                if any(_within(target, f) for f in forbidden) and not any(
                    _within(target, ok) for ok in ALLOWED.get(layer, ())
                ):
                    bad.append(f"{name} -> {target}")
    return bad


def closure(start: str) -> set[str]:
    """Every medlens module `start` can import, lazy imports followed (parents included)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in modules():
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += imports_of(name)
    return seen


def test_graph_reader_sees_lazy_relative_and_type_only_imports(tmp_path: Path) -> None:
    # The reader must see what the rules depend on, or every rule below passes vacuously.
    src = tmp_path / "medlens" / "tasks" / "thing.py"
    src.parent.mkdir(parents=True)
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "from . import sibling\n"
        "from ..models import registry\n"
        "if TYPE_CHECKING:\n"
        "    from medlens.store.base import Store\n"
        "def later():\n"
        "    import medlens.server.app\n"
        "    from medlens.jobs.runner import run\n"
    )
    known = {"medlens.tasks.sibling", "medlens.models.registry"}
    assert read_imports(src, "medlens.tasks.thing", known) == {
        "medlens.tasks",
        "medlens.tasks.sibling",
        "medlens.models",
        "medlens.models.registry",
        "medlens.store.base",
        "medlens.server.app",
        "medlens.jobs.runner",
    }
    assert len(modules()) > 100 and "medlens.server.app" in modules()
    assert any(_within(m, "medlens.evaluation") for m in closure("medlens.cli.eval"))


def test_lower_layers_never_import_upper_ones() -> None:
    assert layer_violations() == []


def test_allowed_crossings_are_leaves() -> None:
    # An allowed crossing imports only the core modules, so no cycle can run through it.
    for targets in ALLOWED.values():
        for target in targets:
            if target in modules():
                assert set(imports_of(target)) <= set(CORE), f"{target}: {imports_of(target)}"


def test_core_modules_import_only_each_other() -> None:
    for name in CORE:
        assert set(imports_of(name)) <= set(CORE), f"{name} imports {set(imports_of(name))}"


def test_server_import_path_never_reaches_evaluation() -> None:
    reached = closure("medlens.server.app")
    assert "medlens.server.routes.api" in reached  # the walk really followed the app
    assert sorted(m for m in reached if _within(m, "medlens.evaluation")) == []
    assert sorted(m for m in reached if _within(m, "medlens.cli")) == []
    assert sorted(m for m in reached if _within(m, "medlens.training")) == []


def _heavy_after_import(names: list[str]) -> dict[str, list[str]]:
    # A fresh interpreter: the first module that pulls a heavy package is named.
    code = (
        "import importlib, json, sys\n"
        f"names, heavy = {names!r}, {HEAVY!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    importlib.import_module(n)\n"
        "    out[n] = [h for h in heavy if h in sys.modules]\n"
        "    if out[n]:\n"
        "        break\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_medlens_and_the_server_load_no_torch() -> None:
    for entry in ("medlens", "medlens.server.app", "medlens.cli.main"):
        assert _heavy_after_import([entry]) == {entry: []}


def test_every_module_but_the_torch_backends_imports_without_torch() -> None:
    light = [n for n in modules() if not n.startswith(HEAVY_BY_DESIGN)]
    out = _heavy_after_import(light)
    pulled = {n: h for n, h in out.items() if h}
    assert pulled == {}
    assert len(out) == len(light)


def test_no_source_file_over_the_line_limit() -> None:
    sizes = {
        str(path.relative_to(SRC)): len(path.read_text("utf-8").splitlines())
        for path in modules().values()
    }
    assert {p: n for p, n in sizes.items() if n > MAX_FILE_LINES} == {}


def _label(path: Path) -> str:
    return str(path.relative_to(SRC)) if path.is_relative_to(SRC) else path.name


def long_functions(paths: list[Path]) -> dict[str, int]:
    """`file:line name` → length in lines (def to last line) of each over-long function."""
    out: dict[str, int] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out[f"{_label(path)}:{node.lineno} {node.name}"] = lines
    return out


def test_no_function_over_the_line_limit_in_tasks_jobs_server() -> None:
    paths = [p for pkg in FUNCTION_SIZE_PACKAGES for p in sorted((PKG / pkg).rglob("*.py"))]
    assert long_functions(paths) == {}


def test_size_check_counts_nested_and_async_functions(tmp_path: Path) -> None:
    body = "    x = 1\n"
    src = tmp_path / "a" / "b" / "m.py"
    src.parent.mkdir(parents=True)
    src.write_text(
        "def ok():\n"
        + body * 79
        + "async def long():\n"
        + body * 80
        + "class C:\n    def outer(self):\n        def inner():\n"
        + "            x = 1\n" * 80
        + "        return inner\n"
    )
    assert long_functions([src]) == {
        "m.py:81 long": 81,
        "m.py:163 outer": 83,
        "m.py:164 inner": 81,
    }
