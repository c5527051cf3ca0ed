"""A killed and resumed run takes the same optimizer steps over the same samples, in the same
order, as one never interrupted: synthetic (in-memory) and feature-shard data, with a step
checkpoint at an epoch's last batch, a step checkpoint mid-epoch, and epoch-end checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

import dcsm.commands.train as train_cmd
import dcsm.train.fit as train_fit
import dcsm.train.synthetic_data as data_module
from dcsm.commands.synthetic_shards import main as make_synthetic_shards
from dcsm.train.fit import resume_path, setup
from dcsm.config import apply_overrides, load_yaml, to_plain
from dcsm.model.encoders import FrozenCLIP
from dcsm.features.writer import cache_shards

REPO = Path(__file__).resolve().parents[2]
N_TRAIN, BATCH, EPOCHS = 8, 2, 3
STEPS_PER_EPOCH = N_TRAIN // BATCH
#: kill -> (checkpoint.every_n_train_steps, the step whose checkpoint the killed run leaves last)
KILLS = {
    "step_ckpt_at_epoch_end": (STEPS_PER_EPOCH, STEPS_PER_EPOCH),
    "step_ckpt_mid_epoch": (STEPS_PER_EPOCH + 2, STEPS_PER_EPOCH + 2),
    "epoch_ckpt": (None, 2 * STEPS_PER_EPOCH),
}


class Killed(Exception):
    """Stands for the process dying."""


class KillAfter(L.Callback):
    """Dies at the first hook after the checkpoint of step ``k`` was written (checkpoint
    callbacks run last in their hook, so the next hook sees it on disk)."""

    def __init__(self, k: int, epoch_end_only: bool) -> None:
        self.k, self.epoch_end_only = k, epoch_end_only

    def _maybe_die(self, trainer: L.Trainer) -> None:
        if trainer.global_step >= self.k:
            raise Killed

    def on_train_batch_start(self, trainer, *args) -> None:  # noqa: ANN001
        if not self.epoch_end_only:
            self._maybe_die(trainer)

    def on_validation_start(self, trainer, *args) -> None:  # noqa: ANN001
        if not self.epoch_end_only:
            self._maybe_die(trainer)

    def on_train_epoch_start(self, trainer, *args) -> None:  # noqa: ANN001
        self._maybe_die(trainer)


class SampleRecorder(L.Callback):
    def __init__(self) -> None:
        self.ids: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        ex = batch.extras
        self.ids.extend(ex["key"] if "key" in ex else ex["index"].tolist())


@pytest.fixture(scope="module")
def feature_shards(tmp_path_factory: pytest.TempPathFactory, encoder: FrozenCLIP) -> Path:
    root = tmp_path_factory.mktemp("resume_shards")
    make_synthetic_shards([f"synthetic_shards.out={root / 'raw'}", f"synthetic_shards.num_samples={N_TRAIN}",
                           "synthetic_shards.samples_per_shard=2", "synthetic_shards.image_size=32"])
    cache_shards(encoder, sorted(str(p) for p in (root / "raw").glob("shard-*.tar")), root / "feat", batch_size=8)
    return root / "feat"


@pytest.fixture
def shared_encoder(monkeypatch: pytest.MonkeyPatch, encoder: FrozenCLIP) -> None:
    """Every run reuses the session encoder and encodes each synthetic split once (speed only:
    the loaders, samplers and checkpoints under test are built per run as usual)."""
    monkeypatch.setattr(train_fit, "FrozenCLIP", lambda spec: encoder)
    memo: dict = {}
    real = data_module.cache_dataset

    def cached(enc, dataset, *args, **kwargs):  # noqa: ANN001, ANN202
        key = (dataset.scenes.split, len(dataset))
        if key not in memo:
            memo[key] = real(enc, dataset, *args, **kwargs)
        return memo[key]

    monkeypatch.setattr(data_module, "cache_dataset", cached)


def _cfg(run_dir: Path, source: str, shards: Path, *extra: str) -> dict:
    data = ["data.source=features", f"data.train_shards={shards}", "data.shuffle_buffer=4"] if source == "features" else []
    return to_plain(apply_overrides(load_yaml(REPO / "configs" / "smoke_random.yaml"), [
        f"run_dir={run_dir}", f"data.train_size={N_TRAIN}", "data.val_size=2", "data.val_splits=[val]",
        "data.image_size=32", f"data.batch_size={BATCH}", "scorer.channels=8", "scorer.hidden=16",
        "logger.kind=none", "trainer.enable_progress_bar=false", f"trainer.max_epochs={EPOCHS}",
        "optim.warmup_steps=1", "checkpoint.monitor=null", *data, *extra,
    ]))


def _fit(cfg: dict, *callbacks: L.Callback) -> tuple:
    module, dm, trainer, run_dir = setup(cfg)
    trainer.callbacks.extend(callbacks)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume_path(cfg, run_dir))
    except Killed:
        pass
    return module, trainer


_FULL: dict[str, tuple[int, int, list]] = {}


@pytest.mark.slow
@pytest.mark.parametrize("kill", list(KILLS))
@pytest.mark.parametrize("source", ["synthetic", "features"])
def test_killed_run_resumes_exactly(tmp_path: Path, source: str, kill: str, feature_shards: Path, shared_encoder) -> None:  # noqa: ANN001
    if source not in _FULL:
        rec = SampleRecorder()
        module, trainer = _fit(_cfg(tmp_path / "full", source, feature_shards), rec)
        _FULL[source] = (trainer.global_step, module.samples_seen, rec.ids, _weights(module))
    steps, samples, ids, weights = _FULL[source]
    assert steps == EPOCHS * STEPS_PER_EPOCH and samples == EPOCHS * N_TRAIN
    assert ids[:N_TRAIN] != ids[N_TRAIN: 2 * N_TRAIN] and sorted(ids[:N_TRAIN]) == sorted(ids[N_TRAIN: 2 * N_TRAIN])

    every, k = KILLS[kill]
    extra = [f"checkpoint.every_n_train_steps={every}"] if every else []
    before, after = SampleRecorder(), SampleRecorder()
    _fit(_cfg(tmp_path / "run", source, feature_shards, *extra), before, KillAfter(k, epoch_end_only=every is None))
    assert len(before.ids) == k * BATCH
    module, trainer = _fit(_cfg(tmp_path / "run", source, feature_shards, *extra, "resume=auto"), after)
    assert trainer.global_step == steps
    assert module.samples_seen == samples
    assert before.ids + after.ids == ids  # the same samples, in the same order
    resumed = _weights(module)  # dropout on: the same masks too, hence the same weights, bit for bit
    assert resumed.keys() == weights.keys()
    assert all(torch.equal(resumed[k], weights[k]) for k in weights), max(
        (resumed[k] - weights[k]).abs().max().item() for k in weights)


def _weights(module) -> dict:  # noqa: ANN001
    return {k: v.detach().clone() for k, v in module.head.state_dict().items()}


def test_runs_train_with_dropout() -> None:
    cfg = _cfg(Path("unused"), "synthetic", Path("unused"))
    assert cfg["scorer"]["dropout"] > 0 and cfg["scorer"]["conv_dropout"] > 0
