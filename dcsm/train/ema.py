"""Exponential moving average (EMA) of the head's trainable weights (``optim.ema_decay``).

Why not Lightning's ``WeightAveraging``: it averages every parameter and buffer of the module,
which here includes the frozen CLIP and the functional-row buffers; ``d * w + (1 - d) * w`` is
not always ``w`` in floating point, so those would drift by an ulp per step. This averages only
what the optimiser trains (the CNN and the residual scale) and leaves every other tensor exact.

What a run sees with it on:

* validation (hence ``val/acc``, the best checkpoint's choice, the dashboard panels) scores the
  averaged weights; training steps keep updating the raw ones;
* every checkpoint's ``state_dict`` holds the averaged head, so ``evaluate.py``, ``dcsm.load``
  and ``dcsm-export-head`` read the EMA model unchanged; the raw weights ride along under
  ``checkpoint["ema"]["raw"]`` (plain tensors) and a resumed run restores both exactly;
* when training ends the module keeps the averaged weights.

The decay warms up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` optimiser steps (the usual
EMA warm-up): early validations are not dominated by the random initialisation.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

CKPT_KEY = "ema"


def ema_decay_at(decay: float, step: int) -> float:
    """The decay used for the update after optimiser step ``step`` (1-based)."""
    return min(decay, (1.0 + step) / (10.0 + step))


class HeadEMA(L.Callback):
    """EMA of ``pl_module.head``'s trainable parameters (see the module docstring)."""

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in (0, 1), got {decay}. Fix: e.g. optim.ema_decay=0.999, or null (off).")
        self.decay = float(decay)
        self.names: list[str] = []
        self.avg: list[torch.Tensor] = []
        self.updates = 0  # optimiser steps averaged so far
        self._swapped = False

    def _params(self, pl_module: L.LightningModule) -> list[torch.Tensor]:
        named = dict(pl_module.head.named_parameters())
        return [named[n] for n in self.names]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        named = [(n, p) for n, p in pl_module.head.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.avg = [p.detach().clone() for _, p in named]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.avg = [a.to(p.device) for a, p in zip(self.avg, self._params(pl_module))]  # setup ran before the move

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step <= self.updates:  # no optimiser step this batch (gradient accumulation)
            return
        self.updates = trainer.global_step
        torch._foreach_lerp_(self.avg, [p.detach() for p in self._params(pl_module)], 1.0 - ema_decay_at(self.decay, self.updates))

    @torch.no_grad()
    def _swap(self, pl_module: L.LightningModule) -> None:
        for a, p in zip(self.avg, self._params(pl_module)):
            tmp = p.detach().clone()
            p.copy_(a)
            a.copy_(tmp)
        self._swapped = not self._swapped

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap(pl_module)  # validate the averaged weights (in a sanity check both are the same)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs ModelCheckpoint's on_validation_end after every other callback's, so its
        # checkpoints are written with the raw weights back in place; on_save_checkpoint stores
        # the average as state_dict whichever set the module holds
        if self._swapped:
            self._swap(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with torch.no_grad():
            for a, p in zip(self.avg, self._params(pl_module)):
                p.copy_(a)

    def _raw_and_avg(self, pl_module: L.LightningModule) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(raw, averaged) head tensors right now, whichever is in the module."""
        live = [p.detach().clone() for p in self._params(pl_module)]
        held = [a.clone() for a in self.avg]
        return (held, live) if self._swapped else (live, held)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        raw, avg = self._raw_and_avg(pl_module)
        sd = checkpoint["state_dict"]
        for n, a in zip(self.names, avg):
            sd["head." + n] = a.cpu()
        checkpoint[CKPT_KEY] = {"decay": self.decay, "updates": self.updates,
                                "raw": {n: r.cpu() for n, r in zip(self.names, raw)}}

    @torch.no_grad()
    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CKPT_KEY)
        params = self._params(pl_module)
        sd = checkpoint["state_dict"]
        self.avg = [sd["head." + n].to(p.device, p.dtype).clone() for n, p in zip(self.names, params)]
        if state is None:  # a run without EMA resumed with it: the average starts from its weights
            return
        # the module was loaded with the averaged weights; put the raw ones back in it
        for n, p in zip(self.names, params):
            p.copy_(state["raw"][n])
        self.updates = int(state["updates"])
        self._swapped = False
