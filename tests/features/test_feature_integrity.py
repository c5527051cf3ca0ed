"""Feature samples carry a checksum: overwritten or flipped bytes and NaN features are skipped
and counted, a key appended twice is trained once, caches from before checksums are read
unverified with a warning, and train and validation losses are reported apart, validation
once (not once per validation pass)."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import dcsm.commands.train as train_cmd
import dcsm.train.fit as train_fit
from dcsm.commands.synthetic_shards import main as make_synthetic_shards
from dcsm.config import apply_overrides, load_yaml, to_plain
from dcsm.train.shard_data import ShardDataConfig, ShardDataModule
from dcsm.data.shards import SampleError, SkippedSampleWarning
from dcsm.model.encoders import FrozenCLIP
from dcsm.features.shards import CHECKSUM_KEY, decode_feature_sample, tensor_checksum
from dcsm.features.writer import cache_shards
from tests.conftest import TINY_OVERRIDES
from tests.shard_surgery import (append_duplicate, edit_feature_bytes, flip_bit, overwrite_ff, read_samples,
                                 strip_checksums, truncate)

REPO = Path(__file__).resolve().parents[2]
N, PER_SHARD = 8, 4


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, encoder: FrozenCLIP) -> Path:
    root = tmp_path_factory.mktemp("integrity")
    make_synthetic_shards([f"synthetic_shards.out={root / 'raw'}", f"synthetic_shards.num_samples={N}",
                           f"synthetic_shards.samples_per_shard={PER_SHARD}", "synthetic_shards.image_size=32"])
    cache_shards(encoder, sorted(str(p) for p in (root / "raw").glob("shard-*.tar")), root / "feat", batch_size=8,
                 progress=False)
    return root / "feat"


@pytest.fixture()
def feats(tmp_path: Path, clean: Path) -> Path:
    shutil.copytree(clean, tmp_path / "feat")
    return tmp_path / "feat"


def _read(folder: Path, encoder: FrozenCLIP) -> tuple[list[str], dict[str, int], ShardDataModule]:
    run_cfg = to_plain(load_yaml(REPO / "configs" / "smoke_random.yaml"))
    run_cfg["data"].update(source="features", train_shards=str(folder), shuffle_buffer=0, batch_size=2, num_workers=0)
    dm = ShardDataModule(ShardDataConfig.from_config(run_cfg), encoder)
    dm.trainer = SimpleNamespace(world_size=1, current_epoch=0, fit_loop=None)
    dm.setup("fit")
    keys = [k for b in dm.train_dataloader() for k in b.extras["key"]]
    return keys, dm.accounts["train"].snapshot(), dm


def test_every_cached_sample_carries_a_verified_checksum(clean: Path) -> None:
    name, data = next((n, d) for n, d in read_samples(clean / "shard-000000.tar")[0] if n.endswith("feat.pth"))
    d = torch.load(io.BytesIO(data), weights_only=True)
    assert d[CHECKSUM_KEY].startswith("sha256:") and tensor_checksum(d) == d[CHECKSUM_KEY]
    d["patches"][0, 0] += 1
    assert tensor_checksum(d) != d[CHECKSUM_KEY]


@pytest.mark.parametrize("edit, reason", [(overwrite_ff, "checksum mismatch"), (flip_bit, "checksum mismatch")])
def test_corrupted_feature_bytes_are_skipped_and_counted(feats: Path, encoder: FrozenCLIP, edit, reason: str) -> None:  # noqa: ANN001
    key = edit_feature_bytes(feats / "shard-000001.tar", 2, edit)
    with pytest.warns(SkippedSampleWarning, match=reason):
        keys, counts, dm = _read(feats, encoder)
    assert key not in keys and len(keys) == N - 1
    assert (counts["used"], counts["lost"], counts["manifest"]) == (N - 1, 1, N)
    assert dm.skips.count == 1 and key in str(dm.skips.examples[0])


def test_nan_features_with_a_valid_checksum_are_skipped(feats: Path, encoder: FrozenCLIP) -> None:
    from tests.shard_surgery import rewrite

    def poison(samples):  # noqa: ANN001, ANN202
        name, data = next((n, x) for n, x in samples[0] if n.endswith("feat.pth"))
        d = torch.load(io.BytesIO(data), weights_only=True)
        d["image_pooled"][0] = float("nan")
        d[CHECKSUM_KEY] = tensor_checksum(d)  # written that way: the checksum cannot catch it
        buf = io.BytesIO()
        torch.save(d, buf)
        samples[0] = [(n, buf.getvalue() if n == name else x) for n, x in samples[0]]
        return samples

    rewrite(feats / "shard-000000.tar", poison)
    with pytest.warns(SkippedSampleWarning, match="non-finite values"):
        keys, counts, _ = _read(feats, encoder)
    assert len(keys) == N - 1 and counts["lost"] == 1


def test_a_sample_appended_twice_is_trained_once(feats: Path, encoder: FrozenCLIP) -> None:
    append_duplicate(feats / "shard-000000.tar", 0)
    with pytest.warns(SkippedSampleWarning, match="duplicate key"):
        keys, counts, _ = _read(feats, encoder)
    assert len(keys) == len(set(keys)) == N
    assert (counts["used"], counts["lost"], counts["duplicates"], counts["manifest"]) == (N, 0, 1, N)


def test_shards_from_before_checksums_are_read_unverified_with_a_warning(
    feats: Path, encoder: FrozenCLIP, caplog: pytest.LogCaptureFixture
) -> None:
    for tar in feats.glob("shard-*.tar"):
        strip_checksums(tar)
    with caplog.at_level(logging.WARNING):
        keys, counts, _ = _read(feats, encoder)
    assert len(keys) == N and counts["lost"] == 0
    assert any("before per-sample checksums" in r.message and "cache_features" in r.message for r in caplog.records)
    members = dict(read_samples(feats / "shard-000000.tar")[0])
    key = next(n for n in members if n.endswith("feat.pth")).split(".", 1)[0]
    d = torch.load(io.BytesIO(members[f"{key}.feat.pth"]), weights_only=True)
    assert CHECKSUM_KEY not in d
    d["patches"][0, 0] = float("inf")  # an unverified sample with a non-finite feature is still refused
    buf = io.BytesIO()
    torch.save(d, buf)
    sample = {"__key__": key, "__url__": "old.tar", **{n.split(".", 1)[1]: x for n, x in members.items()},
              "feat.pth": buf.getvalue()}
    with pytest.raises(SampleError, match="non-finite values"):
        decode_feature_sample(sample)


def test_train_and_validation_losses_are_reported_apart_and_validation_once(
    tmp_path: Path, clean: Path, encoder: FrozenCLIP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One train and one val shard cut in half, 2 epochs (3 validation passes with the sanity check)."""
    for split in ("train", "val"):
        shutil.copytree(clean, tmp_path / split)
        truncate(tmp_path / split / "shard-000001.tar")
    monkeypatch.setattr(train_fit, "FrozenCLIP", lambda spec: encoder)
    argv = ["--config", str(REPO / "configs" / "smoke_random.yaml"), *TINY_OVERRIDES, f"run_dir={tmp_path / 'run'}",
            "data.source=features", f"data.train_shards={tmp_path / 'train'}", f"data.val_shards={tmp_path / 'val'}",
            "data.shuffle_buffer=0", "data.batch_size=2", "data.num_workers=0", "scorer.channels=8", "scorer.hidden=16",
            "logger.kind=none", "progress=false", "trainer.max_epochs=2", "optim.warmup_steps=1",
            "data.test_size=2", "data.image_size=32", "eval.splits=[test]", "eval.batch_size=2"]
    with pytest.warns(SkippedSampleWarning):
        train_cmd.main(argv)
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())["training_data"]
    train, val = data["train"], data["val"]
    lost_per_pass = val["lost"]
    assert 0 < lost_per_pass < PER_SHARD
    assert train["epochs"] == 2 and train["lost"] == 2 * lost_per_pass  # the same cut, read in 2 epochs
    assert data["lost_samples"] == train["lost"]  # training only
    assert val["epochs"] == 1 and val["used"] + val["lost"] == val["manifest"] == N  # once, not per pass
    assert train["used"] + train["lost"] + train["dropped"] == train["manifest"] == 2 * N
