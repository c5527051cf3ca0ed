"""A full disk is one line naming the file being written and the free space (exit 2), and
nothing partial is left: simulated ENOSPC at the atomic-write layer (checkpoints through
``torch.save``, JSON, tar shards) and through the commands' error handler."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

import dcsm.io as dcsm_io
from dcsm.commands.synthetic_shards import main as synthetic_shards_main
from dcsm.data.shards.write import write_tar
from dcsm.io import DiskFullError, atomic_torch_save, atomic_write_json
from dcsm.commands.runner import USAGE_EXIT, run_command
from tests.conftest import TINY_OVERRIDES

REPO = Path(__file__).resolve().parents[1]


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, f, room: int) -> None:  # noqa: ANN001
        self._f, self.room = f, room

    def write(self, data) -> int:  # noqa: ANN001
        size = len(memoryview(data).cast("B"))
        if size > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= size
        return self._f.write(data)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._f, name)

    def __enter__(self):  # noqa: ANN204
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self._f.close()


def fill_disk(monkeypatch: pytest.MonkeyPatch, room: int = 64, only: str = "") -> None:
    """Temp files of ``dcsm.io.atomic_write`` (whose name contains ``only``) run out of space."""
    real = os.fdopen

    def fdopen(fd: int, *args, **kwargs):  # noqa: ANN002, ANN003
        f = real(fd, *args, **kwargs)
        return _FullDisk(f, room) if only in os.readlink(f"/proc/self/fd/{fd}") else f

    monkeypatch.setattr(dcsm_io.os, "fdopen", fdopen)


def _no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.rglob("*.tmp")], list(folder.rglob("*"))


@pytest.mark.parametrize("writer", ["torch_save", "json", "tar"])
def test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old(writer: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / {"torch_save": "last.ckpt", "json": "metrics.json", "tar": "shard-000000.tar"}[writer]
    write = {
        "torch_save": lambda obj: atomic_torch_save({"w": torch.full((4096,), float(obj))}, path),
        "json": lambda obj: atomic_write_json(path, {"acc": obj, "pad": "x" * 4096}),
        "tar": lambda obj: write_tar(path, [(f"{obj}.txt", b"y" * 4096)]),
    }[writer]
    write(1)
    before = path.read_bytes()
    fill_disk(monkeypatch)
    with pytest.raises(DiskFullError) as info:
        write(2)
    msg = str(info.value)
    assert f"'{path}'" in msg and "free in" in msg and "no partial file" in msg and "\n" not in msg
    assert path.read_bytes() == before  # the old file is intact
    _no_temp_files(tmp_path)
    if writer == "torch_save":  # torch.save alone would say "RuntimeError: unexpected pos"
        assert isinstance(info.value.__cause__, RuntimeError | OSError)


def test_disk_full_while_writing_shards_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    fill_disk(monkeypatch, room=2048, only="shard-")
    out = tmp_path / "shards"
    with pytest.raises(SystemExit) as exc:
        run_command(synthetic_shards_main, [f"synthetic_shards.out={out}", "synthetic_shards.num_samples=4",
                                            "synthetic_shards.samples_per_shard=2", "data.image_size=32", "progress=false"])
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: disk full while writing") and "shard-000000" in err[0], err
    assert " free in " in err[0]
    assert not list(out.glob("*.tar"))  # no partial shard
    _no_temp_files(out)


def test_disk_full_while_saving_a_checkpoint_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    from dcsm.commands.train import main as train_main

    fill_disk(monkeypatch, room=4096, only=".ckpt.")
    smoke = str(REPO / "configs" / "smoke_random.yaml")
    with pytest.raises(SystemExit) as exc:
        run_command(train_main, ["--config", smoke, f"run_dir={tmp_path}", "logger.kind=none", "data.train_size=8",
                                 "data.val_size=4", "data.test_size=4", "data.shifted_size=4", "data.batch_size=8",
                                 "trainer.max_epochs=1", "progress=false"])
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    err = [ln for ln in err if ln.startswith("error:")]
    assert len(err) == 1 and "disk full while writing" in err[0] and "checkpoints" in err[0] and ".ckpt'" in err[0], err
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))  # nothing partial
    _no_temp_files(tmp_path)
    assert not (tmp_path / "metrics.json").exists()


def test_runner_turns_any_escaping_enospc_into_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    png = tmp_path / "eval_failures" / "000_row1_image.png"

    def main(argv):  # noqa: ANN001, ANN202  (a PIL save or W&B file write outside dcsm.io)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(png))

    with pytest.raises(SystemExit) as exc:
        run_command(main, [])
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"disk full while writing '{png}'" in err[0] and "free in" in err[0]

    def other(argv):  # noqa: ANN001, ANN202  (any other OSError still raises, with its traceback)
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError, match="I/O error"):
        run_command(other, [])
    json.dumps(err)  # plain text


def test_disk_full_while_caching_features_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, encoder) -> None:  # noqa: ANN001
    import dcsm.commands.cache_features as cache_features_cmd

    raw = tmp_path / "raw"
    synthetic_shards_main([f"synthetic_shards.out={raw}", "synthetic_shards.num_samples=4", "synthetic_shards.samples_per_shard=2",
                           "synthetic_shards.image_size=32", "progress=false"])
    monkeypatch.setattr(cache_features_cmd, "FrozenCLIP", lambda spec: encoder)  # the session's tiny encoder
    fill_disk(monkeypatch, room=4096, only="shard-")
    feat = tmp_path / "feat"
    with pytest.raises(SystemExit) as exc:
        run_command(cache_features_cmd.main, [f"cache_features.shards={raw}", f"cache_features.out={feat}", "progress=false",
                                              *TINY_OVERRIDES])
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: disk full while writing '{feat}/shard-") and " free in " in err[0], err
    assert not list(feat.glob("*.tar"))  # no partial feature shard
    _no_temp_files(feat)
