"""One run per run_dir; temp files of a killed checkpoint write are cleaned on start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcsm.run_lock import RunDirBusyError, RunDirLock, clean_orphan_temp_files


def test_second_run_in_same_dir_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with RunDirLock(tmp_path):
        with pytest.raises(RunDirBusyError, match=r"in use by another run \(pid \d+ on .+ since .+\).*run_dir="):
            with RunDirLock(tmp_path):
                pass
    with RunDirLock(tmp_path):  # released on exit: the next run may start
        pass


def test_lock_held_by_another_process_and_released_when_it_dies(tmp_path: Path) -> None:
    code = f"from dcsm.run_lock import RunDirLock; import time\nwith RunDirLock({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusyError, match=f"pid {proc.pid}"):
            with RunDirLock(tmp_path):
                pass
    finally:
        proc.kill()
        proc.wait()
    deadline = time.time() + 10
    while True:  # the kernel drops a killed holder's flock
        try:
            with RunDirLock(tmp_path):
                break
        except RunDirBusyError:
            assert time.time() < deadline
            time.sleep(0.1)


def test_disabled_lock_on_other_ranks(tmp_path: Path) -> None:
    with RunDirLock(tmp_path), RunDirLock(tmp_path, enabled=False):
        pass


def test_orphan_temp_files_removed(tmp_path: Path) -> None:
    (tmp_path / ".last.ckpt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "last.ckpt").write_bytes(b"whole")
    (tmp_path / "notes.tmp").write_text("not ours")
    removed = clean_orphan_temp_files(tmp_path)
    assert [p.name for p in removed] == [".last.ckpt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "notes.tmp"]
    assert clean_orphan_temp_files(tmp_path / "missing") == []
