"""Lightning callback: run chosen diagnostics (heads, pruning, center_bias, ...) at validation end during training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch

from ..model.encoders import FrozenCLIP
from .pruning import ScoreFn
from .run import center_bias_metrics, run_diagnostics

log = logging.getLogger(__name__)

__all__ = ["DiagnosticsCallback", "find_encoder", "default_scorers"]


def find_encoder(pl_module: L.LightningModule) -> FrozenCLIP:
    """The module's frozen encoder: ``.encoder``, ``.model.encoder``, else the first FrozenCLIP submodule."""
    for path in ("encoder", "model.encoder"):
        obj: Any = pl_module
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, FrozenCLIP):
            return obj
    for m in pl_module.modules():
        if isinstance(m, FrozenCLIP):
            return m
    raise ValueError(f"{type(pl_module).__name__} holds no FrozenCLIP encoder: the diagnostics callback needs one.")


def default_scorers(pl_module: L.LightningModule) -> dict[str, ScoreFn]:
    """``{"dcsm": model}`` when the module wraps a model called as ``model(images, options) -> (N, K)``
    (the ``DCSM`` API; it moves images to its encoder's device itself); else none (CLIP only)."""
    model = getattr(pl_module, "model", None)
    if model is not None and callable(model) and isinstance(getattr(model, "encoder", None), FrozenCLIP):
        return {"dcsm": model}
    return {}


class DiagnosticsCallback(L.Callback):
    """Every ``every_n_epochs`` validation ends: run ``names`` on the module's encoder (rank 0 only).

    Files go to ``out_dir/epoch_{NNN}/`` (default ``<trainer.default_root_dir>/diagnostics``); W&B
    gets them when the trainer's logger is a WandbLogger. The module is put in eval mode for the
    run and restored.
    """

    def __init__(
        self,
        names: Sequence[str],
        cfg: dict,
        out_dir: str | Path | None = None,
        every_n_epochs: int = 1,
        scorers_fn: Callable[[L.LightningModule], dict[str, ScoreFn]] = default_scorers,
    ) -> None:
        super().__init__()
        self.names, self.cfg, self.out_dir = list(names), cfg, out_dir
        self.every_n_epochs, self.scorers_fn = max(1, int(every_n_epochs)), scorers_fn
        self.reports: list[dict] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.names or trainer.sanity_checking or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs:
            return
        root = Path(self.out_dir) if self.out_dir else Path(trainer.default_root_dir) / "diagnostics"
        out = root / f"epoch_{epoch:03d}"
        run = None
        for lg in trainer.loggers:
            if type(lg).__name__ == "WandbLogger":
                run = lg.experiment
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.inference_mode(False), torch.no_grad():
                report = run_diagnostics(self.names, find_encoder(pl_module), self.cfg, out, scorers=self.scorers_fn(pl_module),
                                         wandb_run=run, progress=False)
        finally:
            pl_module.train(was_training)
        self.reports.append(report)
        metrics = {}
        for name, b in report.get("pruning", {}).get("baseline", {}).items():
            metrics[f"diagnostics/{name}_acc"] = b["acc"]
        if "center_bias" in report:
            metrics.update({f"diagnostics/{k}": v for k, v in center_bias_metrics(report["center_bias"]).items()})
        if metrics:
            for lg in trainer.loggers:
                if type(lg).__name__ != "WandbLogger":  # W&B already has them from run_diagnostics
                    lg.log_metrics(metrics, step=trainer.global_step)
        log.info("diagnostics %s written to %s", self.names, out)
