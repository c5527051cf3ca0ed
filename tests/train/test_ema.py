"""``optim.ema_decay``: the head's trainable weights are averaged (and nothing else), checkpoints
and the finished module hold the average, the raw weights ride along, and a killed run resumes
to the same raw and averaged weights as one never interrupted."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from dcsm.checkpoints.safe_load import read_checkpoint
from dcsm.train.ema import CKPT_KEY, HeadEMA, ema_decay_at
from dcsm.config import ConfigError
from dcsm.train.fit import resume_path, setup

from test_resume import EPOCHS, STEPS_PER_EPOCH, KillAfter, _cfg, _fit, shared_encoder  # noqa: F401 - fixture

DECAY = 0.7  # a short horizon: a few steps of a tiny run move the average visibly away from the raw weights


class RawRecorder(L.Callback):
    """The raw trainable head weights after every optimiser step (runs after HeadEMA's update,
    which does not touch them)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # noqa: ANN001
        self.steps.append({n: p.detach().clone() for n, p in pl_module.head.named_parameters() if p.requires_grad})

    def on_validation_batch_start(self, trainer, pl_module, *args) -> None:  # noqa: ANN001
        self.validated = {n: p.detach().clone() for n, p in pl_module.head.named_parameters() if p.requires_grad}


def test_decay_warms_up() -> None:
    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay_at(0.999, 10**6) == 0.999
    with pytest.raises(ValueError, match="optim.ema_decay"):
        HeadEMA(1.0)


def test_ema_averages_the_trained_weights_only(tmp_path: Path, shared_encoder) -> None:  # noqa: ANN001
    cfg = _cfg(tmp_path / "run", "synthetic", Path("unused"), f"optim.ema_decay={DECAY}")
    module, _, _, _ = setup(cfg)  # seeded: the same initial weights as the run below
    init = {n: t.detach().clone() for n, t in module.head.named_parameters()}
    buffers = {n: t.detach().clone() for n, t in module.head.named_buffers()}
    rec = RawRecorder()
    module, trainer = _fit(cfg, rec)
    assert len(rec.steps) == trainer.global_step == EPOCHS * STEPS_PER_EPOCH
    names = list(rec.steps[0])
    assert names and set(names) <= set(init)
    avg = {n: init[n] for n in names}  # the same average by hand (the first updates use the warm-up decay)
    for t, raw in enumerate(rec.steps, start=1):
        avg = {n: torch.lerp(avg[n], raw[n], 1.0 - ema_decay_at(DECAY, t)) for n in names}
    final = dict(module.head.named_parameters())
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    moved = 0
    for n in names:
        torch.testing.assert_close(final[n].detach(), avg[n], rtol=1e-5, atol=1e-6)  # the finished module: the average
        torch.testing.assert_close(rec.validated[n], avg[n], rtol=1e-5, atol=1e-6)  # what the last validation scored
        torch.testing.assert_close(ckpt["state_dict"]["head." + n], avg[n], rtol=1e-5, atol=1e-6)  # checkpoints too
        assert torch.equal(ckpt[CKPT_KEY]["raw"][n], rec.steps[-1][n])  # and the raw weights, bit for bit
        moved += int(not torch.allclose(avg[n], rec.steps[-1][n]))
    assert moved, "the average should differ from the last raw weights"
    assert ckpt[CKPT_KEY]["updates"] == trainer.global_step
    for n, b in module.head.named_buffers():  # functional rows are not averaged: exactly as built
        assert torch.equal(buffers[n], b), n
        assert torch.equal(ckpt["state_dict"]["head." + n], b), n


def test_killed_run_with_ema_resumes_exactly(tmp_path: Path, shared_encoder) -> None:  # noqa: ANN001
    extra = (f"optim.ema_decay={DECAY}", f"checkpoint.every_n_train_steps={STEPS_PER_EPOCH + 2}")
    full, _ = _fit(_cfg(tmp_path / "full", "synthetic", Path("unused"), *extra))
    _fit(_cfg(tmp_path / "run", "synthetic", Path("unused"), *extra), KillAfter(STEPS_PER_EPOCH + 2, epoch_end_only=False))
    with pytest.raises(ConfigError, match=rf"optim.ema_decay={DECAY}.*EMA off"):  # not from the average, silently
        resume_path(_cfg(tmp_path / "run", "synthetic", Path("unused"), *extra[1:], "resume=auto"), tmp_path / "run")
    after = RawRecorder()
    resumed, trainer = _fit(_cfg(tmp_path / "run", "synthetic", Path("unused"), *extra, "resume=auto"), after)
    assert trainer.global_step == EPOCHS * STEPS_PER_EPOCH
    assert len(after.steps) == EPOCHS * STEPS_PER_EPOCH - (STEPS_PER_EPOCH + 2)  # it resumed, not started over
    a, b = full.head.state_dict(), resumed.head.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), max((a[k] - b[k]).abs().max().item() for k in a)
    ra = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")[CKPT_KEY]["raw"]
    rb = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")[CKPT_KEY]["raw"]
    assert ra.keys() == rb.keys() and all(torch.equal(ra[k], rb[k]) for k in ra)
