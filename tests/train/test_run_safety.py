"""train.py refuses a busy run_dir, cleans temp files of killed writes, and never unpickles code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dcsm.checkpoints.load import load_dcsm
from dcsm.commands.train import main as train_main
from dcsm.run_lock import RunDirBusyError, RunDirLock
from dcsm.checkpoints.safe_load import CheckpointError, UnsafeCheckpointError

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke_random.yaml")
TINY = ["data.train_size=8", "data.val_size=4", "data.test_size=4", "data.shifted_size=4", "data.batch_size=4",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger.kind=none"]


def test_second_run_into_a_busy_run_dir_is_refused_before_building(tmp_path: Path) -> None:
    with RunDirLock(tmp_path):  # another run holds it
        with pytest.raises(RunDirBusyError, match=rf"run_dir '{tmp_path}' is in use by another run \(pid {os.getpid()}"):
            train_main(["--config", SMOKE, f"run_dir={tmp_path}", *TINY])
    assert not (tmp_path / "checkpoints").exists()  # nothing was built or written


def test_corrupt_last_ckpt_names_the_file_and_orphans_are_cleaned(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    orphan = ckpts / ".last.ckpt.k1ll3d.tmp"
    orphan.write_bytes(b"half a checkpoint")
    (ckpts / "last.ckpt").write_bytes(b"\x00" * 100)  # resume: auto picks it up
    with pytest.raises(CheckpointError) as info:
        train_main(["--config", SMOKE, f"run_dir={tmp_path}", *TINY])
    msg = str(info.value)
    assert str(ckpts / "last.ckpt") in msg and "resume=null" in msg and "\n" not in msg
    assert not orphan.exists()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_never_runs_on_load(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"cfg": {"x": _Payload(marker)}}}, evil)
    with pytest.raises(UnsafeCheckpointError, match="evil.ckpt"):
        load_dcsm(str(evil))
    assert not marker.exists()
