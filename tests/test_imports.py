"""Every dcsm module imports in a fresh interpreter, in dependency order, with no import circles,
neither between modules nor between the package's folders (``dcsm/model``, ``dcsm/data``, ...).

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


def folder_of(name: str, path: Path) -> str:
    """``dcsm.model.maps`` -> ``dcsm.model``; a root module (``dcsm.io``) and the package itself are their own node."""
    parts = name.split(".")
    if len(parts) > 2 or (len(parts) == 2 and path.name == "__init__.py"):
        return ".".join(parts[:2])
    return name


def folder_graph() -> dict[str, set[str]]:
    """Folder (or root module) -> the folders / root modules its modules import."""
    mods = module_names()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        src = folder_of(name, path)
        deps = graph.setdefault(src, set())
        for dep in imported_modules(name, path, set(mods)):
            dst = folder_of(dep, mods[dep])
            if dst != src:
                deps.add(dst)
    return graph


def test_no_import_circles_between_folders() -> None:
    graph = folder_graph()
    assert {"dcsm.model", "dcsm.data", "dcsm.features", "dcsm.train", "dcsm.eval", "dcsm.commands"} <= set(graph)
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        raise AssertionError(f"import circle among dcsm folders: {' -> '.join(err.args[1])}") from None
    assert order.index("dcsm.model") < order.index("dcsm.data") < order.index("dcsm.features") < order.index("dcsm.train")
    assert order.index("dcsm.eval") < order.index("dcsm.train") < order.index("dcsm.commands")


#: The folders in import order (README "How it works"): each imports only folders before it.
FOLDER_ORDER = ("dcsm.model", "dcsm.checkpoints", "dcsm.data", "dcsm.features", "dcsm.eval", "dcsm.train",
                "dcsm.diagnostics", "dcsm.commands")


def test_lower_folders_never_import_higher_ones() -> None:
    """``data/`` is raw data only (no cache, trainer or evaluation); ``model/`` knows no trainer
    and no metric; nothing but the programs imports ``commands/``; every folder imports only the
    folders before it in :data:`FOLDER_ORDER`."""
    graph = folder_graph()
    upward = [(src, dst) for src in FOLDER_ORDER for dst in graph.get(src, set())
              if dst in FOLDER_ORDER and FOLDER_ORDER.index(dst) > FOLDER_ORDER.index(src)]
    assert upward == []
    assert not graph["dcsm.data"] & {"dcsm.features", "dcsm.train", "dcsm.eval", "dcsm.diagnostics", "dcsm.commands"}
    assert not graph["dcsm.model"] & {"dcsm.data", "dcsm.features", "dcsm.train", "dcsm.eval", "dcsm.commands"}
    assert [src for src, deps in graph.items() if "dcsm.commands" in deps] == []


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


def test_train_py_refuses_a_typo_before_torch_or_lightning_is_imported() -> None:
    """``train.py`` checks its config first: a misspelt key is one line and exit 2 without the
    seconds that importing torch and Lightning take."""
    code = (
        "import sys\n"
        "from dcsm.commands.runner import run_command\n"
        "from dcsm.commands.train import main\n"
        "try:\n"
        "    run_command(main, ['data.trian_size=5'])\n"
        "except SystemExit as e:\n"
        "    print(e.code, sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.strip() == "2 []", out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [
        "error: unknown config key 'data.trian_size' in overrides ['data.trian_size=5']. "
        "Fix: check the spelling against configs/default.yaml."]


def test_the_config_rule_table_does_not_import_lightning_or_open_clip() -> None:
    """Every command checks values against :func:`dcsm.config_schema.schema` before building
    anything; its owners of choices must not pull in Lightning or open_clip (seconds each on 2
    cores: a value typo exited after 7-14 s while they were imported, 3.5-4 s without). Only
    ``train_schema`` (``trainer.precision``) imports Lightning, for ``train.py``."""
    code = ("import sys\nfrom dcsm.config_schema import schema\nschema()\n"
            "print(sorted(m for m in ('lightning', 'open_clip', 'matplotlib') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
