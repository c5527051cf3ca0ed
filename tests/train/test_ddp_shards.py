"""Two-process DDP (gloo, CPU) on feature shards through ``train.py`` as a user launches it
(``trainer.strategy=ddp trainer.devices=2``): equal, uneven, truncated and corrupt shards
never hang (a timeout inside the test fails instead), every rank takes the same steps, and
``used + lost + dropped`` equals the manifest's samples in ``metrics.json``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcsm.commands.synthetic_shards import main as make_synthetic_shards
from dcsm.model.encoders import EncoderSpec, FrozenCLIP
from dcsm.features.writer import cache_shards
from tests.shard_surgery import edit_feature_bytes, overwrite_ff, regroup, truncate

REPO = Path(__file__).resolve().parents[2]
BATCH = 4
TIMEOUT_S = 240  # a healthy 2-process run here takes ~20-40 s on 2 shared cores; a hang would block CI forever
TOY = EncoderSpec(model="dcsm-toy-ViT", pretrained="toy", max_tokens=20)


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 feature samples of the toy CLIP in shards of 8."""
    root = tmp_path_factory.mktemp("ddp")
    make_synthetic_shards([f"synthetic_shards.out={root / 'raw'}", "synthetic_shards.num_samples=80",
                           "synthetic_shards.samples_per_shard=8", "synthetic_shards.image_size=96"])
    cache_shards(FrozenCLIP(TOY), sorted(str(p) for p in (root / "raw").glob("shard-*.tar")), root / "feat",
                 batch_size=16, progress=False)
    return root / "feat"


def run_ddp(run_dir: Path, train: Path, *extra: str, val: Path | None = None, torchrun: bool = False) -> dict:
    """``train.py`` under 2-process DDP (Lightning's launcher, or ``torchrun``); its ``metrics.json``
    (the test fails on a hang or an error)."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"] if torchrun else [sys.executable]
    args = [*launch, str(REPO / "train.py"), "--config", str(REPO / "configs" / "smoke.yaml"),
            f"run_dir={run_dir}", "data.source=features", f"data.train_shards={train}",
            f"data.val_shards={val if val is not None else 'null'}", f"data.batch_size={BATCH}", "data.shuffle_buffer=8",
            "data.num_workers=0", "data.test_size=8", "eval.splits=[test]", "eval.batch_size=8", "logger.kind=none",
            "progress=false", "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.strategy=ddp", "optim.warmup_steps=1", "trainer.log_every_n_steps=1",
            f"checkpoint.monitor={'val/acc' if val is not None else 'null'}", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        out, _ = proc.communicate()
        pytest.fail(f"DDP run hung (> {TIMEOUT_S} s):\n{out[-3000:]}")
    assert proc.returncode == 0, out[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["_log"] = out
    return metrics


def check_accounting(data: dict, split: str, manifest_per_epoch: int, epochs: int) -> dict:
    r = data[split]
    assert r["epochs"] == epochs and r["manifest_per_epoch"] == manifest_per_epoch
    assert r["manifest"] == manifest_per_epoch * epochs
    assert r["used"] + r["lost"] + r["dropped"] == r["manifest"], r
    return r


def equal_steps(data: dict, steps: int) -> None:
    ranks = data["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert [r["global_step"] for r in ranks] == [steps, steps]
    assert [r["train_batches"] for r in ranks] == [steps, steps]


@pytest.mark.slow
def test_ddp_equal_shards_use_every_sample_once(tmp_path: Path, features: Path) -> None:
    train = regroup(features, tmp_path / "train", [8, 8, 8, 8])
    data = run_ddp(tmp_path / "run", train)["training_data"]
    r = check_accounting(data, "train", 32, 1)
    assert (r["used"], r["lost"], r["dropped"], r["repeated"]) == (32, 0, 0, 0)
    equal_steps(data, 32 // 2 // BATCH)


@pytest.mark.slow
def test_ddp_shard_cut_in_half_and_a_corrupt_sample_do_not_hang(tmp_path: Path, features: Path) -> None:
    """The hang of issue 22 (two equal shards, one cut in half) plus 0xFF over one sample's
    feature bytes (fp16 NaN) in the other shard, so each rank loses samples of its own: both
    fill up by repeating, take the same steps, and the head stays finite."""
    train = regroup(features, tmp_path / "train", [16, 16])
    truncate(train / "shard-000001.tar")
    edit_feature_bytes(train / "shard-000000.tar", 5, overwrite_ff)
    metrics = run_ddp(tmp_path / "run", train)
    data = metrics["training_data"]
    r = check_accounting(data, "train", 32, 1)
    assert r["lost"] > 1 and r["dropped"] == 0 and r["repeated"] == r["lost"]  # each short rank filled up
    assert data["lost_samples"] == r["lost"] and r["lost_fraction"] == pytest.approx(r["lost"] / 32, abs=1e-6)
    equal_steps(data, 16 // BATCH)
    assert "checksum mismatch" in metrics["_log"] and "repeated to even out DDP ranks" in metrics["_log"]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_torchrun_launch_with_a_cut_shard_takes_equal_steps(tmp_path: Path, features: Path) -> None:
    train = regroup(features, tmp_path / "train", [8, 16, 8])
    truncate(train / "shard-000001.tar")
    data = run_ddp(tmp_path / "run", train, torchrun=True)["training_data"]
    r = check_accounting(data, "train", 32, 1)
    # the cut shard's missing tail is lost when its reader got to it, dropped (unread) when it had its share first
    assert r["lost"] + r["dropped"] > 0 and r["used"] < 32
    assert r["used"] + r["repeated"] == 32  # 2 ranks x 16 samples, whatever was lost
    equal_steps(data, 16 // BATCH)


@pytest.mark.slow
def test_ddp_uneven_shards_with_workers_and_validation(tmp_path: Path, features: Path) -> None:
    """16/24/40 on 2 ranks x 2 workers (3 shards, 4 readers: one reads none and resamples),
    2 epochs; a validation shard cut in half is counted once, not once per validation pass."""
    train = regroup(features, tmp_path / "train", [16, 24, 40])
    val = regroup(features, tmp_path / "val", [8, 8])
    truncate(val / "shard-000001.tar")
    data = run_ddp(tmp_path / "run", train, "data.num_workers=2", "trainer.max_epochs=2", val=val)["training_data"]
    r = check_accounting(data, "train", 80, 2)
    # 4 readers x 20 per epoch: the 16-shard's reader repeats 4, the 24's drops 4, the 40's drops 20
    # (a random 20, new each epoch), the reader without a shard resamples 20 from all shards
    assert (r["used"], r["lost"], r["dropped"], r["repeated"]) == (2 * 56, 0, 2 * 24, 2 * 24)
    equal_steps(data, 2 * 2 * 20 // BATCH)
    v = check_accounting(data, "val", 16, 1)  # the last whole pass only (3 passes ran, sanity check included)
    assert v["lost"] > 0 and v["dropped"] == v["repeated"] == 0 and v["used"] == 16 - v["lost"]


@pytest.mark.slow
def test_ddp_run_stopped_and_resumed_ends_with_the_same_weights(tmp_path: Path, features: Path) -> None:
    """A cut shard (so a rank repeats samples), dropout on, 2 epochs of 4 steps; stopped at
    step 6 (a step checkpoint mid-epoch) and resumed: the same steps and bit-identical weights."""
    train = regroup(features, tmp_path / "train", [16, 16])
    truncate(train / "shard-000001.tar")
    # a flat LR (max_steps does not reshape it); step checkpoints every 2 steps (the last at step 8)
    common = ("trainer.max_epochs=2", "optim.min_lr_ratio=1.0", "checkpoint.every_n_train_steps=2")
    full = run_ddp(tmp_path / "full", train, *common)["training_data"]
    equal_steps(full, 8)
    run_ddp(tmp_path / "run", train, *common, "trainer.max_steps=6")
    resumed = run_ddp(tmp_path / "run", train, *common, "resume=auto")
    assert [r["global_step"] for r in resumed["training_data"]["ranks"]] == [8, 8]
    check_accounting(resumed["training_data"], "train", 32, 1)  # this process read epoch 1 to its end

    def weights(run: str) -> dict:
        ckpt = torch.load(tmp_path / run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["global_step"] == 8
        return ckpt["state_dict"]

    a, b = weights("full"), weights("run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
