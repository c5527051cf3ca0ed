"""Corrupt shards: the samples lost are counted against the manifest, every epoch still
validates, and a run that never validates fails with one line instead of exiting 0."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest

import dcsm.commands.train as train_cmd
import dcsm.train.fit as train_fit
from dcsm.commands.synthetic_shards import main as make_synthetic_shards
from dcsm.train.fit import resume_path, setup
from dcsm.config import apply_overrides, load_yaml, to_plain
from dcsm.train.shard_data import ShardDataConfig, ShardDataModule
from dcsm.data.shards import SkippedSampleWarning
from dcsm.model.encoders import FrozenCLIP
from dcsm.features.writer import cache_shards
from tests.conftest import TINY_OVERRIDES
from dcsm.commands.runner import run_command

REPO = Path(__file__).resolve().parents[2]
N, PER_SHARD, BATCH = 8, 2, 2


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, encoder: FrozenCLIP) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("skips")
    make_synthetic_shards([f"synthetic_shards.out={root / 'raw'}", f"synthetic_shards.num_samples={N}",
                           f"synthetic_shards.samples_per_shard={PER_SHARD}", "synthetic_shards.image_size=32"])
    cache_shards(encoder, sorted(str(p) for p in (root / "raw").glob("shard-*.tar")), root / "val", batch_size=8)
    shutil.copytree(root / "val", root / "train")
    (root / "train" / "shard-000001.tar").write_bytes(b"not a tar file")  # its 2 samples are lost
    return {"train": root / "train", "val": root / "val"}


def _cfg(run_dir: Path, *extra: str) -> list[str]:
    return [f"run_dir={run_dir}", "data.source=features", "data.shuffle_buffer=4", f"data.batch_size={BATCH}",
            "data.num_workers=0", "scorer.channels=8", "scorer.hidden=16", "logger.kind=none",
            "trainer.enable_progress_bar=false", "trainer.max_epochs=2", "optim.warmup_steps=1", *extra]


class ValidationCounter(L.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        if not trainer.sanity_checking:
            self.epochs.append(trainer.current_epoch)


def test_a_tar_cut_in_half_counts_every_sample_it_lost(tmp_path: Path, encoder: FrozenCLIP) -> None:
    make_synthetic_shards([f"synthetic_shards.out={tmp_path}", "synthetic_shards.num_samples=16",
                           "synthetic_shards.samples_per_shard=16", "synthetic_shards.image_size=32"])
    tar = tmp_path / "shard-000000.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    run_cfg = to_plain(load_yaml(REPO / "configs" / "smoke_random.yaml"))
    run_cfg["data"].update(source="shards", train_shards=str(tmp_path), shuffle_buffer=0, batch_size=4, num_workers=0)
    dm = ShardDataModule(ShardDataConfig.from_config(run_cfg), encoder)
    dm.trainer = SimpleNamespace(world_size=1, current_epoch=0, fit_loop=None)
    dm.setup("fit")
    # where half the bytes end decides the message: at a tar block boundary the shard ends cleanly and is
    # short of its manifest; inside a member it is unreadable (the scenes' PNG sizes move that point)
    with pytest.warns(SkippedSampleWarning, match="of the 16 samples its manifest lists|unreadable shard"):
        keys = [k for b in dm.train_dataloader() for k in b["key"]]
    assert 0 < len(keys) < 15
    assert dm.skips.count <= 2  # a cut tail is one or two skips (a tar error, the short count) ...
    assert dm.skips.lost_samples == 16 - len(keys)  # ... but every sample the manifest lists past the cut is lost


def test_skipped_samples_still_validate_every_epoch_and_are_logged(
    tmp_path: Path, shards: dict[str, Path], encoder: FrozenCLIP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train_fit, "FrozenCLIP", lambda spec: encoder)
    cfg = to_plain(apply_overrides(load_yaml(REPO / "configs" / "smoke_random.yaml"), _cfg(
        tmp_path, f"data.train_shards={shards['train']}", f"data.val_shards={shards['val']}")))
    module, dm, trainer, run_dir = setup(cfg)
    counter = ValidationCounter()
    trainer.callbacks.append(counter)
    with pytest.warns(SkippedSampleWarning):
        trainer.fit(module, datamodule=dm, ckpt_path=resume_path(cfg, run_dir))
    assert trainer.global_step == 2 * (N - PER_SHARD) // BATCH  # 3 of the 4 promised batches per epoch
    assert counter.epochs == [0, 1]  # a short stream still ends its epoch with validation
    assert Path(trainer.checkpoint_callback.best_model_path).is_file()
    assert trainer.callback_metrics["data/lost_samples"].item() == 2 * PER_SHARD  # both epochs
    assert dm.skips.lost_samples == 2 * PER_SHARD and dm.skips.count == 2


def test_a_run_without_validation_fails_with_one_line(
    tmp_path: Path, shards: dict[str, Path], encoder: FrozenCLIP, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(train_fit, "FrozenCLIP", lambda spec: encoder)
    argv = ["--config", str(REPO / "configs" / "smoke_random.yaml"),
            *_cfg(tmp_path, f"data.train_shards={shards['val']}", "trainer.max_epochs=1")]
    with pytest.raises(SystemExit) as exit_info:
        run_command(train_cmd.main, argv)
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "checkpoint.monitor=val/acc" in err[0] and "data.val_shards" in err[0]
    assert not (tmp_path / "metrics.json").exists()


def test_metrics_json_reports_the_lost_samples(
    tmp_path: Path, shards: dict[str, Path], encoder: FrozenCLIP, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setattr(train_fit, "FrozenCLIP", lambda spec: encoder)
    argv = ["--config", str(REPO / "configs" / "smoke_random.yaml"), *TINY_OVERRIDES, *_cfg(
        tmp_path, f"data.train_shards={shards['train']}", f"data.val_shards={shards['val']}", "trainer.max_epochs=1",
        "data.test_size=2", "data.image_size=32", "eval.splits=[test]", "eval.batch_size=2")]
    with pytest.warns(SkippedSampleWarning):
        train_cmd.main(argv)
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["training_data"]["lost_samples"] == PER_SHARD and report["training_data"]["skip_events"] == 1
    assert "shard-000001.tar" in report["training_data"]["skip_examples"][0]
