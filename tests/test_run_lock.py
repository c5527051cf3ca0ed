"""One run per run_dir; temp files of a killed checkpoint write are cleaned on start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcsm.run_lock import RunDirBusyError, RunDirLock, clean_orphan_temp_files
from tests.conftest import TINY_OVERRIDES


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


def test_a_second_cache_features_job_into_one_folder_is_refused(
    tmp_path: Path, encoder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: ANN001
) -> None:
    """While one job writes feature shards into a folder (holds its lock), a second exits 2 with
    one line and leaves the first one's temp files alone."""
    import dcsm.commands.cache_features as cache_cmd
    from dcsm.commands.synthetic_shards import main as make_synthetic_shards
    from dcsm.commands.runner import run_command

    make_synthetic_shards([f"synthetic_shards.out={tmp_path / 'raw'}", "synthetic_shards.num_samples=2",
                           "synthetic_shards.samples_per_shard=2", "synthetic_shards.image_size=32"])
    out = tmp_path / "feat"
    out.mkdir()
    temp = out / ".shard-000000.tar.abc123.tmp"  # the first job's shard being written
    temp.write_bytes(b"partial")
    monkeypatch.setattr(cache_cmd, "FrozenCLIP", lambda spec: encoder)
    argv = [f"cache_features.shards={tmp_path / 'raw'}", f"cache_features.out={out}", *TINY_OVERRIDES, "progress=false"]
    with RunDirLock(out, key="cache_features.out"):  # the first job
        with pytest.raises(SystemExit) as exit_info:
            run_command(cache_cmd.main, argv)
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "cache_features.out" in err[0] and "in use by another run" in err[0]
    assert temp.read_bytes() == b"partial" and not (out / "shard-000000.tar").exists()
    run_command(cache_cmd.main, argv)  # once the first job is gone, it runs (and resumes) normally
    assert (out / "shard-000000.tar").is_file() and not temp.exists()
