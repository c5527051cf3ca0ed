"""Every dcsm module imports in a fresh interpreter, in dependency order, with no import circles.

The graph counts every ``import`` of a dcsm module anywhere in a file (also inside functions:
a deferred import is how a circle usually hides), so a circle fails here even when Python
would tolerate it at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "dcsm"


def module_names() -> dict[str, Path]:
    """``dcsm.x.y`` -> file, for every ``.py`` file of the package."""
    out = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The dcsm modules ``name`` imports (``from pkg import sub`` counts ``pkg.sub`` when it is a module)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                root = ".".join(base[: len(base) - node.level + 1])
                mod = f"{root}.{node.module}" if node.module else root
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # ``import dcsm.x.attr`` -> dcsm.x
                t = t.rpartition(".")[0]
            if t and t != name:
                deps.add(t)
    return deps


def dependency_order() -> list[str]:
    mods = module_names()
    graph = {name: imported_modules(name, path, set(mods)) for name, path in mods.items()}
    return list(TopologicalSorter(graph).static_order())


def test_no_import_circles() -> None:
    try:
        order = dependency_order()
    except CycleError as err:
        raise AssertionError(f"import circle among dcsm modules: {' -> '.join(err.args[1])}") from None
    assert order[0] == PACKAGE or PACKAGE in order
    assert {"dcsm.model.dcsm", "dcsm.features", "dcsm.commands.runner", "dcsm.train.module"} <= set(order)
    assert order.index("dcsm.model.dcsm") < order.index("dcsm.train.module") < order.index("dcsm.commands.train")


def test_every_module_imports_in_dependency_order_in_a_fresh_interpreter() -> None:
    order = dependency_order()
    code = (
        "import importlib, sys\n"
        f"for name in {order!r}:\n"
        "    importlib.import_module(name)\n"
        "print(len(sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
