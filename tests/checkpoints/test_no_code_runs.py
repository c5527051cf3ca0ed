"""No file a user hands dcsm runs code (issue 21 section 1): every kind of hostile checkpoint
(raw pickle, legacy format with a stealth magic number, tar ``storages``, TorchScript
``__setstate__``, zip ``data.pkl`` calling ``posix.system`` / ``builtins.eval``) at every entry point
(``evaluate.py eval.checkpoint=``, ``eval.benchmark=all``, ``dcsm.load``, ``train.py resume=PATH``,
a planted ``last.ckpt`` under ``resume: auto``, ``dcsm-export-head``, Lightning's checkpoint
reader) is refused with one line, exit 2; the payload never prints and never creates its marker.

The full matrix calls each command's ``main`` in-process through :func:`dcsm.commands.runner.run_command`
(the console scripts' exact path, output captured at the file-descriptor level so a payload's
``os.system`` echo would show); the ``slow`` tests run the real command lines as subprocesses.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch

import dcsm
from dcsm.commands.evaluate import main as evaluate_main
from dcsm.commands.export_head import main as export_main
from dcsm.commands.train import main as train_main
from dcsm.train.checkpoint_io import AtomicCheckpointIO
from dcsm.commands.runner import USAGE_EXIT, run_command
from dcsm.checkpoints.safe_load import CheckpointError, RefusedFormatError, check_torch_zip, read_checkpoint
from tests.malicious_files import PAYLOADS, PRINTED, payload_fires
from tests.suite_helpers import write_checkpoint

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke_random.yaml")
TINY = ["data.train_size=8", "data.val_size=4", "data.test_size=4", "data.shifted_size=4", "data.batch_size=4",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger.kind=none"]
#: What each kind's one-line error says it is.
REFUSAL = {
    "raw_pickle_system": "it is a pickle stream",
    "raw_pickle_eval": "it is a pickle stream",
    "legacy_stealth": "it is a pickle stream (a raw pickle or torch's legacy non-zip format",
    "tar_storages": "it is a tar archive",
    "torchscript": "it is a TorchScript archive",
    "zip_system": "it asks to load 'posix.system'",
    "zip_eval": "it asks to load 'builtins.eval'",
}
CONVERTIBLE = ("raw_pickle", "legacy", "tar", "torchscript")  # refused by format: the message says how to convert


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory, encoder) -> Path:  # noqa: ANN001
    return write_checkpoint(tmp_path_factory.mktemp("real") / "best.ckpt", encoder, seed=1)


def _hostile(kind: str, tmp_path: Path, real: Path, name: str = "evil.ckpt") -> tuple[Path, Path]:
    marker = tmp_path / f"marker_{kind}"
    path = tmp_path / name
    PAYLOADS[kind](path, marker, real)
    return path, marker


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_payloads_are_live(kind: str, tmp_path: Path, real_checkpoint: Path, capfd: pytest.CaptureFixture) -> None:
    """Each hostile file does run its payload when loaded the unsafe way (so the tests below mean something)."""
    path, marker = _hostile(kind, tmp_path, real_checkpoint)
    payload_fires(kind, path)
    assert marker.exists() and PRINTED in capfd.readouterr().out
    if kind == "legacy_stealth":  # ... and the stealth variant then loads as the real checkpoint
        marker.unlink()
        ck = torch.load(path, weights_only=False)  # noqa: S614 - temp file we made
        assert marker.exists() and set(ck) == set(torch.load(real_checkpoint, weights_only=True))


def _command(main: Callable, argv: list[str], capfd: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exc:
        run_command(main, argv)
    assert exc.value.code == USAGE_EXIT
    out, err = capfd.readouterr()
    assert PRINTED not in out and PRINTED not in err
    err = err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def _api(path: Path, tmp_path: Path, real: Path, capfd: pytest.CaptureFixture) -> str:
    with pytest.raises(CheckpointError) as info:
        dcsm.load(path, device="cpu")
    out, err = capfd.readouterr()
    assert PRINTED not in out + err
    return f"error: {info.value}"


def _lightning(path: Path, tmp_path: Path, real: Path, capfd: pytest.CaptureFixture) -> str:
    with pytest.raises(CheckpointError) as info:
        AtomicCheckpointIO().load_checkpoint(path)  # what trainer.fit(ckpt_path=...) calls
    assert PRINTED not in "".join(capfd.readouterr())
    return f"error: {info.value}"


def _evaluate(path: Path, tmp_path: Path, real: Path, capfd: pytest.CaptureFixture) -> str:
    return _command(evaluate_main, [f"eval.checkpoint={path}", "logger.kind=none", f"run_dir={tmp_path / 'run'}"], capfd)


def _evaluate_all(path: Path, tmp_path: Path, real: Path, capfd: pytest.CaptureFixture) -> str:
    # a healthy checkpoint first: every one of the compared checkpoints is checked
    return _command(evaluate_main, ["eval.benchmark=all", f"eval.checkpoint=[{real},{path}]", f"eval.data_root={tmp_path}",
                                    "logger.kind=none", f"run_dir={tmp_path / 'run'}"], capfd)


def _train_resume(path: Path, tmp_path: Path, real: Path, capfd: pytest.CaptureFixture) -> str:
    return _command(train_main, ["--config", SMOKE, f"run_dir={tmp_path / 'run'}", f"resume={path}", *TINY], capfd)


def _train_auto(path: Path, tmp_path: Path, real: Path, capfd: pytest.CaptureFixture) -> str:
    planted = tmp_path / "run" / "checkpoints" / "last.ckpt"
    planted.parent.mkdir(parents=True)
    shutil.copyfile(path, planted)
    err = _command(train_main, ["--config", SMOKE, f"run_dir={tmp_path / 'run'}", "resume=auto", *TINY], capfd)
    assert str(planted) in err
    return err.replace(str(planted), str(path))


def _export_head(path: Path, tmp_path: Path, real: Path, capfd: pytest.CaptureFixture) -> str:
    err = _command(export_main, [f"export_head.checkpoint={path}", f"export_head.out={tmp_path / 'out' / 'head'}"], capfd)
    assert not (tmp_path / "out").exists()
    return err


ENTRY_POINTS = {"evaluate": _evaluate, "evaluate_all": _evaluate_all, "dcsm.load": _api, "train_resume": _train_resume,
                "train_auto_last_ckpt": _train_auto, "export_head": _export_head, "lightning_io": _lightning}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_hostile_file_is_refused_at_every_entry_point(kind: str, entry: str, tmp_path: Path, real_checkpoint: Path,
                                                       capfd: pytest.CaptureFixture) -> None:
    path, marker = _hostile(kind, tmp_path, real_checkpoint)
    err = ENTRY_POINTS[entry](path, tmp_path, real_checkpoint, capfd)
    assert not marker.exists()
    assert f"checkpoint '{path}' refused: {REFUSAL[kind]}" in err, err
    if kind.startswith(CONVERTIBLE):  # says how to convert a file the user trusts
        assert "load it in a trusted environment and save it again" in err and "torch.save(" in err
        assert ("torch.jit.load(" in err) == (kind == "torchscript")
    assert not (tmp_path / "run" / "checkpoints" / "best.ckpt").exists()


def _calls(tree: ast.AST, owner: str, attr: str) -> int:
    return sum(1 for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
               and n.func.attr == attr and ast.unparse(n.func.value).endswith(owner))


def test_torch_jit_is_never_called_on_user_input() -> None:
    """No dcsm module calls torch.jit.load, and every torch.load sits in a module that runs the zip check first."""
    hits = []
    for py in (REPO / "dcsm").rglob("*.py"):
        text = py.read_text(encoding="utf-8")
        tree = ast.parse(text)
        if _calls(tree, "jit", "load"):
            hits.append(f"{py}: torch.jit.load")
        if _calls(tree, "torch", "load") and "check_torch_zip(" not in text:
            hits.append(f"{py}: torch.load without check_torch_zip")
    assert not hits, hits


def test_plain_torch_save_layouts_load(tmp_path: Path) -> None:
    """What torch.save writes (file and bytes) passes the layout check; an extra member is refused by name."""
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.arange(3.0), "cfg": {"a": 1}}, path)
    check_torch_zip(path)
    check_torch_zip(path.read_bytes(), "sample.pth")
    assert torch.equal(read_checkpoint(path)["w"], torch.arange(3.0))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("ok/extra/notes.txt", "hi")
    with pytest.raises(RefusedFormatError, match=r"'.*ok\.pt' refused: it is a TorchScript archive \(member 'ok/extra/notes.txt'"):
        read_checkpoint(path)
    with pytest.raises(RefusedFormatError, match="refused: it is a pickle stream"):
        check_torch_zip(b"\x80\x02K\x01.", "shard-000.tar:key.pth")


def test_feature_shard_sample_with_a_payload_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """A feature-shard sample goes through the same check (bytes): a corrupt sample, payload not run."""
    from dcsm.data.shards.format import JSON_EXT, SampleError
    from dcsm.features.shards import FEATURE_EXT, decode_feature_sample

    marker = tmp_path / "marker"
    PAYLOADS["legacy_stealth"](tmp_path / "x.pth", marker, None)
    sample = {"__key__": "s0", FEATURE_EXT: (tmp_path / "x.pth").read_bytes(), JSON_EXT: b'{"captions": ["a", "b"], "label": 0}'}
    with pytest.raises(SampleError, match=r"unreadable s0\.feat\.pth.*refused: it is a pickle stream"):
        decode_feature_sample(sample)
    assert not marker.exists() and PRINTED not in "".join(capfd.readouterr())


SUBPROCESS_CASES = [  # one real command line per entry point, each with another payload kind
    ("evaluate", "legacy_stealth", [str(REPO / "evaluate.py"), "eval.checkpoint={evil}", "logger.kind=none", "run_dir={tmp}/run"]),
    ("evaluate_all", "torchscript", [str(REPO / "evaluate.py"), "eval.benchmark=all", "eval.checkpoint={evil}",
                                     "eval.data_root={tmp}", "logger.kind=none", "run_dir={tmp}/run"]),
    ("train_resume", "tar_storages", [str(REPO / "train.py"), "--config", SMOKE, "run_dir={tmp}/run", "resume={evil}", *TINY]),
    ("train_auto", "raw_pickle_system", [str(REPO / "train.py"), "--config", SMOKE, "run_dir={tmp}/run", "resume=auto", *TINY]),
    ("export_head", "zip_eval", ["-c", "from dcsm.commands.console_scripts import export_head; export_head()",
                                 "export_head.checkpoint={evil}", "export_head.out={tmp}/out"]),
    ("dcsm.load", "legacy_stealth", ["-c", "import sys, dcsm\ntry:\n    dcsm.load(sys.argv[1], device='cpu')\n"
                                     "except dcsm.checkpoints.safe_load.CheckpointError as e:\n    print(f'error: {{e}}', file=sys.stderr)\n"
                                     "    sys.exit(2)", "{evil}"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("entry,kind,args", SUBPROCESS_CASES, ids=[c[0] for c in SUBPROCESS_CASES])
def test_hostile_file_command_lines(entry: str, kind: str, args: list[str], tmp_path: Path, real_checkpoint: Path) -> None:
    evil, marker = _hostile(kind, tmp_path, real_checkpoint)
    if entry == "train_auto":
        planted = tmp_path / "run" / "checkpoints" / "last.ckpt"
        planted.parent.mkdir(parents=True)
        shutil.move(evil, planted)
        evil = planted
    argv = [a.format(evil=evil, tmp=tmp_path) for a in args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert proc.returncode == USAGE_EXIT, proc.stderr[-2000:]
    assert PRINTED not in proc.stdout + proc.stderr and not marker.exists()
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and f"'{evil}' refused: {REFUSAL[kind]}" in lines[-1], proc.stderr[-2000:]
    assert not any("Traceback" in ln for ln in lines)
