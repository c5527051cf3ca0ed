"""The package installs as a library: a wheel carries configs, weights and data files, and its
console scripts run from another directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_every_dcsm_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "dcsm").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from this checkout, installed (without re-installing its dependencies) into a venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist")], check=True, cwd=tmp)
    wheel = next((tmp / "dist").glob("dcsm-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("dcsm/configs/default.yaml", "dcsm/configs/smoke.yaml", "dcsm/weights/dcsm-toy-ViT.safetensors",
                   "dcsm/diagnostics/data/text_bank.txt", "dcsm/model_configs/dcsm-toy-ViT.json"):
        assert needed in names, needed
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # outside the test's PYTHONPATH (a checkout's dcsm.egg-info there reads as "already installed")
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, env=clean_env)
    see_outer_packages(venv)  # after the install: pip would take an outer (e.g. editable) dcsm for this one
    return venv


def see_outer_packages(venv: Path) -> Path:
    """Let ``venv`` import what the interpreter running the tests imports (torch, lightning, ...).

    ``--system-site-packages`` would show the *base* interpreter's packages, not those of the
    virtualenv or conda env the tests run in (no torch there), and would activate the ``.pth``
    hooks of the base's packages — an editable ``dcsm`` install's import finder would then shadow
    the wheel under test. A ``.pth`` file in the new venv instead appends the running
    interpreter's site-packages (venv, conda, user or system) as plain paths after the venv's own:
    their packages import, their ``.pth`` hooks stay off, and the wheel in the venv comes first.
    """
    import site

    on_path = [p for p in sys.path if os.path.basename(p.rstrip("/")) in ("site-packages", "dist-packages")]
    outer = [*site.getsitepackages(), site.getusersitepackages(), *on_path]  # on_path: e.g. a venv's system site
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    pth = Path(purelib) / "_dcsm_test_outer_env.pth"
    pth.write_text("".join(f"{p}\n" for p in dict.fromkeys(outer) if os.path.isdir(p)))
    return pth


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_installed_commands_run_from_another_directory(installed: Path, tmp_path: Path) -> None:
    where = _run(installed, "python", "-c", "import dcsm, dcsm.config as c; print(dcsm.__file__); print(c.CONFIG_DIR)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr[-2000:]
    module_file, config_dir = where.stdout.split()
    assert str(installed) in module_file and config_dir.endswith("dcsm/configs"), where.stdout  # the wheel, not the checkout
    help_ = _run(installed, "dcsm-train", "--help", cwd=tmp_path)
    assert help_.returncode == 0 and "usage: [--config FILE|NAME] [key=value ...]" in help_.stdout
    for script in ("dcsm-evaluate", "dcsm-cache-features", "dcsm-synthetic-shards", "dcsm-pretrain-toy-clip", "dcsm-export-head"):
        assert _run(installed, script, "--help", cwd=tmp_path).returncode == 0, script
    run_dir = tmp_path / "run"
    train = _run(installed, "dcsm-train", "--config", "smoke_random", f"run_dir={run_dir}", "logger.kind=none",
                 "data.train_size=8", "data.val_size=4", "data.test_size=4", "data.shifted_size=4", "data.batch_size=4",
                 "trainer.max_epochs=1", "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "ViT-B-32" and metrics["metrics"]["test"]["n"]["all"] == 4
    bad = _run(installed, "dcsm-train", "trainer.max_epohcs=1", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "max_epohcs" in bad.stderr
