"""Stop a run whose training loss turns NaN or infinite, before the bad step reaches the weights.

:class:`NonFiniteLossGuard` is a Lightning Callback: at every backward pass it checks the loss
and raises :class:`NonFiniteLossError` naming the step, epoch and batch (the command runner
prints it as one ``error:`` line, exit 2). Nothing is saved by that step, so ``last.ckpt`` stays
the last good state. Under DDP every rank stops together (any rank's non-finite loss stops all).
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite."""


class NonFiniteLossGuard(Callback):
    """Raise :class:`NonFiniteLossError` when the training loss is not finite."""

    def __init__(self) -> None:
        self.batch_idx = -1

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int) -> None:
        self.batch_idx = batch_idx

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            value = float(loss.detach().float().reshape(-1)[0])
            raise NonFiniteLossError(
                f"training loss became {value} at step {trainer.global_step} (epoch {trainer.current_epoch}, batch "
                f"{self.batch_idx}); the run is stopped, that step was not "
                "applied or saved. Fix: lower optim.lr, use trainer.precision=32-true, or check the data and the "
                "resumed checkpoint; resume=auto continues from the last good checkpoint."
            )
