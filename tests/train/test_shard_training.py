"""Training from feature shards: DDP splits samples exactly once; a killed run resumes its stream."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from dcsm.commands.synthetic_shards import main as make_synthetic_shards
from dcsm.features.writer import cache_shards
from dcsm.train.fit import setup
from dcsm.config import load_yaml, apply_overrides
from dcsm.model.encoders import FrozenCLIP
from dcsm.config import to_plain
from tests.conftest import TINY_OVERRIDES, TINY_SPEC

REPO = Path(__file__).resolve().parents[2]
N_SAMPLES, PER_SHARD, BATCH = 16, 4, 2


@pytest.fixture(scope="module")
def feature_shards(tmp_path_factory: pytest.TempPathFactory, encoder: FrozenCLIP) -> Path:
    root = tmp_path_factory.mktemp("shards")
    make_synthetic_shards([f"synthetic_shards.out={root / 'raw'}", f"synthetic_shards.num_samples={N_SAMPLES}",
                           f"synthetic_shards.samples_per_shard={PER_SHARD}", "synthetic_shards.image_size=224"])
    raw = sorted(str(p) for p in (root / "raw").glob("shard-*.tar"))
    cache_shards(encoder, raw, root / "feat", batch_size=8)
    return root / "feat"


def _cfg(run_dir: Path, shards: Path, *extra: str) -> dict:
    cfg = apply_overrides(load_yaml(REPO / "configs" / "smoke_random.yaml"), [
        *TINY_OVERRIDES, f"run_dir={run_dir}", "data.source=features", f"data.train_shards={shards}", "data.shuffle_buffer=8",
        f"data.batch_size={BATCH}", "data.num_workers=0", "logger.kind=none", "trainer.enable_progress_bar=false",
        "trainer.max_epochs=2", "optim.warmup_steps=1", "checkpoint.monitor=null", *extra,
    ])
    return to_plain(cfg)


class KeyRecorder(L.Callback):
    def __init__(self, out: Path | None = None) -> None:
        self.keys: list[str] = []
        self.out = out

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.keys.extend(batch.extras["key"])  # feature-shard batches are FeatureBatch

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        if self.out is not None:  # one file per rank and epoch
            path = self.out / f"rank{trainer.global_rank}-epoch{trainer.current_epoch}.json"
            path.write_text(json.dumps(self.keys))
            self.keys = []


def _fit(cfg: dict, encoder: FrozenCLIP, recorder: KeyRecorder, **trainer_overrides) -> tuple:
    cfg["trainer"].update(trainer_overrides)
    module, dm, trainer, run_dir = setup(cfg)
    trainer.callbacks.append(recorder)
    from dcsm.train.fit import resume_path

    trainer.fit(module, datamodule=dm, ckpt_path=resume_path(cfg, run_dir))
    return module, trainer


def test_killed_run_resumes_step_count_and_stream(tmp_path: Path, feature_shards: Path, encoder: FrozenCLIP) -> None:
    full = KeyRecorder()
    module_a, trainer_a = _fit(_cfg(tmp_path / "a", feature_shards), encoder, full)
    steps_per_epoch = N_SAMPLES // BATCH
    assert trainer_a.global_step == 2 * steps_per_epoch
    assert sorted(full.keys[: N_SAMPLES]) == sorted(full.keys[N_SAMPLES:])  # every sample once per epoch
    assert full.keys[:N_SAMPLES] != full.keys[N_SAMPLES:]  # reshuffled per epoch

    k = steps_per_epoch + 3  # killed mid-way through epoch 1, after a step checkpoint at k
    part1, part2 = KeyRecorder(), KeyRecorder()
    cfg_b = _cfg(tmp_path / "b", feature_shards, f"checkpoint.every_n_train_steps={k}")
    _fit(cfg_b, encoder, part1, max_steps=k)
    module_b, trainer_b = _fit(_cfg(tmp_path / "b", feature_shards, "resume=auto"), encoder, part2)
    assert trainer_b.global_step == trainer_a.global_step
    assert module_b.samples_seen == module_a.samples_seen == 2 * N_SAMPLES
    assert part1.keys + part2.keys == full.keys  # the same stream, in the same order


@pytest.mark.slow
def test_ddp_two_processes_see_every_sample_once(tmp_path: Path, feature_shards: Path) -> None:
    cfg = _cfg(tmp_path / "ddp", feature_shards, "trainer.max_epochs=1", "data.num_workers=2")
    cfg["trainer"].update(devices=2, strategy="ddp_spawn", accelerator="cpu")
    module, dm, trainer, _ = setup(cfg)
    trainer.callbacks.append(KeyRecorder(tmp_path))
    trainer.fit(module, datamodule=dm)
    seen = {r: json.loads((tmp_path / f"rank{r}-epoch0.json").read_text()) for r in (0, 1)}
    assert len(seen[0]) == len(seen[1]) == N_SAMPLES // 2
    assert not set(seen[0]) & set(seen[1])
    assert len(set(seen[0]) | set(seen[1])) == N_SAMPLES


def test_scores_from_cached_features_equal_live_encoding(tmp_path: Path, feature_shards: Path, encoder: FrozenCLIP) -> None:
    from dcsm.data.shards import raw_sample_pipeline
    from dcsm.features import collate_mcq, encode_batch
    from dcsm.features.shards import feature_sample_pipeline

    module = setup(_cfg(tmp_path, feature_shards))[0]
    model = module.model.eval()
    raw_dir = feature_shards.parent / "raw"
    live = collate_mcq(list(raw_sample_pipeline(str(raw_dir), encoder.preprocess, split_by_node=False, split_by_worker=False)))
    cached = collate_mcq(list(feature_sample_pipeline(str(feature_shards), split_by_node=False, split_by_worker=False)))
    assert live["key"] == cached.extras["key"] and len(live["key"]) == N_SAMPLES
    with torch.no_grad():
        live_f = encode_batch(encoder, live)
        s_live, s_cached = model(live_f), model(cached)
        c_live, c_cached = model.clip_scores(live_f), model.clip_scores(cached)
    assert s_live.shape == (N_SAMPLES, 4)
    assert torch.allclose(s_cached, s_live, atol=2e-3 * s_live.abs().max().item() + 1e-4)
    assert torch.allclose(c_cached, c_live, atol=2e-3)
    assert torch.equal(s_cached.argmax(1), s_live.argmax(1))


def test_paired_loss_trains_from_feature_shards(tmp_path: Path, feature_shards: Path, encoder: FrozenCLIP) -> None:
    rec = KeyRecorder()
    module, trainer = _fit(_cfg(tmp_path, feature_shards, "loss.kind=paired", "trainer.max_epochs=1"), encoder, rec)
    assert trainer.global_step == N_SAMPLES // BATCH and sorted(rec.keys) == sorted(set(rec.keys))
    assert module.samples_seen == N_SAMPLES


def _module_for(urls: str, encoder, world: int, **cfg) -> "ShardDataModule":  # noqa: ANN001, F821
    from types import SimpleNamespace

    from dcsm.train.shard_data import ShardDataConfig, ShardDataModule

    run_cfg = to_plain(load_yaml(REPO / "configs" / "smoke.yaml"))
    run_cfg["data"].update(train_shards=urls, shuffle_buffer=0, batch_size=BATCH, num_workers=0, **cfg)
    dm = ShardDataModule(ShardDataConfig.from_config(run_cfg), encoder)
    dm.trainer = SimpleNamespace(world_size=world, current_epoch=0, fit_loop=None)
    return dm


def test_uneven_shards_give_every_rank_the_same_batches(tmp_path: Path, encoder: FrozenCLIP, monkeypatch) -> None:  # noqa: ANN001
    make_synthetic_shards([f"synthetic_shards.out={tmp_path}", "synthetic_shards.num_samples=13",
                           "synthetic_shards.samples_per_shard=4", "synthetic_shards.image_size=64"])
    seen, counts = {}, {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dm = _module_for(str(tmp_path), encoder, world=2, source="shards")
        dm.setup("fit")
        loader = dm.train_dataloader()
        batches = [b["key"] for b in loader]
        assert len(batches) == dm.train_batches_per_epoch() == 4
        seen[rank] = [k for b in batches for k in b]
        counts[rank] = dm.accounts["train"].snapshot()
    # shards of 4, 4, 4, 1 over 2 ranks: each rank yields ceil(13 / 2) -> 8 (whole batches); the rank
    # holding 4 + 1 repeats 3 of its own samples, nothing is dropped, every sample is used
    assert len(seen[0]) == len(seen[1]) == 8
    assert len(set(seen[0]) | set(seen[1])) == 13 and not set(seen[0]) & set(seen[1])
    total = {k: counts[0][k] + counts[1][k] for k in counts[0]}
    assert total["manifest"] == 13 and total["used"] == 13 and total["repeated"] == 3
    assert total["lost"] == total["dropped"] == 0 and total["passes"] == 2


def test_shards_without_counts_need_samples_per_epoch(tmp_path: Path, feature_shards: Path, encoder: FrozenCLIP) -> None:
    import shutil

    shutil.copy(feature_shards / "shard-000000.tar", tmp_path / "shard-000000.tar")
    dm = _module_for(str(tmp_path / "shard-{000000..000000}.tar"), encoder, world=1, source="features")
    with pytest.raises(ValueError, match="data.samples_per_epoch"):
        dm.setup("fit")
    dm = _module_for(str(tmp_path / "shard-{000000..000000}.tar"), encoder, world=1, source="features", samples_per_epoch=4)
    dm.setup("fit")
    assert dm.train_batches_per_epoch() == 2


def test_features_from_another_encoder_are_refused(feature_shards: Path) -> None:
    from types import SimpleNamespace

    from dcsm.model.encoders import EncoderSpec

    other = SimpleNamespace(spec=EncoderSpec(model=TINY_SPEC.model, pretrained=TINY_SPEC.pretrained, max_tokens=16))
    dm = _module_for(str(feature_shards), other, world=1, source="features")
    with pytest.raises(ValueError, match="max_tokens: 20 in the features, 16 configured"):
        dm.setup("fit")


def test_a_reader_over_its_share_drops_a_new_random_subset_each_epoch(tmp_path: Path) -> None:
    """Shards of 4, 4, 4, 1 on 2 ranks with 3 samples each: every reader yields exactly 3, the
    ones it leaves out (counted as dropped, never decoded) change from epoch to epoch."""
    from dcsm.train.shard_data import shard_manifests
    from dcsm.data.shards import raw_sample_pipeline

    make_synthetic_shards([f"synthetic_shards.out={tmp_path}", "synthetic_shards.num_samples=13",
                           "synthetic_shards.samples_per_shard=4", "synthetic_shards.image_size=32"])
    counts, _ = shard_manifests(str(tmp_path))
    kept: dict[int, list[set]] = {0: [], 1: []}
    for epoch in range(4):
        for rank in (0, 1):
            pipe = raw_sample_pipeline(str(tmp_path), None, rank=rank, world_size=2, shuffle_buffer=0, seed=0, epoch=epoch,
                                       shuffle_shards=True, expected_counts=counts, reader_samples=3)
            keys = [s["key"] for s in pipe]
            assert len(keys) == len(set(keys)) == 3
            kept[rank].append(set(keys))
            c = pipe.account.snapshot()
            assert c["used"] == 3 and c["used"] + c["lost"] + c["dropped"] == c["manifest"] and c["repeated"] == 0
    for rank in (0, 1):
        assert len({frozenset(k) for k in kept[rank]}) > 1  # not the same left-out samples every epoch
