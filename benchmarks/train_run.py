"""One timed ``train.py`` run: wall time per phase, training samples/s, peak GPU memory -> JSON.

    python benchmarks/train_run.py bench.output=run.json [bench.max_time_s=240] [key=value ...]
    python benchmarks/train_run.py --config MY.yaml bench.output=run.json   # MY.yaml: 'base: train_run.yaml'

The config is ``benchmarks/train_run.yaml``: ``configs/default.yaml`` (the run, overridable as
for ``train.py``) plus ``bench.output`` and ``bench.max_time_s``. Builds the run with the same
code as ``train.py`` (:func:`dcsm.train.fit.setup`), encodes the feature cache on the
training device first (timed on its own), then fits; epoch times exclude validation.
``bench.max_time_s`` hands Lightning a ``max_time`` so that a run on a time budget stops
cleanly after the epoch in progress; the JSON says how many epochs ran. Post-fit evaluation is
not part of the run (``evaluate.py`` does it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from dcsm.train.fit import setup
from dcsm.io import atomic_write_json
from dcsm.commands.runner import run_command
from write_results import REPO, bench_config, machine_info

DEFAULT_CONFIG = REPO / "benchmarks" / "train_run.yaml"
RUN_SECTIONS = ("encoder", "data", "trainer", "scorer", "maps", "optim")  # recorded in the results JSON


class EpochTimer(L.Callback):
    """Wall-clock windows of the training epochs and the validation seconds inside each
    (Lightning validates at the end of the epoch, before ``on_train_epoch_end``)."""

    def __init__(self) -> None:
        self.epochs: list[tuple[float, float]] = []
        self.val_s: list[float] = []
        self._t0 = self._v0 = self._val = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._val = time.time(), 0.0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._v0 = time.time()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val += time.time() - self._v0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.epochs.append((self._t0, time.time()))
        self.val_s.append(self._val)


def run(cfg: dict) -> dict[str, Any]:
    """Time one training run of ``cfg`` (``bench:`` names the JSON and the time budget)."""
    started = time.time()
    bench = cfg.pop("bench")  # the run itself sees the train.py config only
    if not bench["output"]:
        raise ValueError("no results file. Fix: bench.output=run.json.")
    max_time_s = bench["max_time_s"]
    if max_time_s:
        cfg["trainer"]["max_time"] = {"seconds": int(max_time_s)}
    module, dm, trainer, run_dir = setup(cfg)
    device = trainer.strategy.root_device
    timer = EpochTimer()
    trainer.callbacks.append(timer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.time()
    module.encoder.to(device)  # the cache is encoded on the training device, as inside fit
    dm.setup("fit")
    t_cached = time.time()
    trainer.fit(module, datamodule=dm)
    t_fit = time.time()
    n_train = len(dm.datasets["train"])
    k = cfg["data"]["num_options"]
    epoch_s = [b - a - v for (a, b), v in zip(timer.epochs, timer.val_s)]  # validation excluded
    train_s = sum(epoch_s)
    metrics = {k_: float(v) for k_, v in trainer.callback_metrics.items() if k_.endswith(("acc", "loss"))}
    figures = {
        "wall time (setup + caching + fit)": f"{t_fit - started:.1f} s",
        "encoding the feature cache": f"{t_cached - t0:.1f} s ({n_train + sum(len(dm.datasets[s]) for s in dm.val_names):,} scenes)",
        "fit (train + val + checkpoints)": f"{t_fit - t_cached:.1f} s",
        "epochs run": f"{len(epoch_s)} (max_epochs {cfg['trainer']['max_epochs']})",
        "train epoch time (median; checkpoint saves in, validation out)": f"{sorted(epoch_s)[len(epoch_s) // 2]:.2f} s" if epoch_s else "—",
        "validation per epoch (median)": f"{sorted(timer.val_s)[len(timer.val_s) // 2]:.2f} s" if epoch_s else "—",
        "training samples/s (train epochs only)": f"{n_train * len(epoch_s) / train_s:,.0f}" if train_s else "—",
        "training pairs/s": f"{n_train * len(epoch_s) * k / train_s:,.0f}" if train_s else "—",
        "peak GPU memory allocated (torch)": (f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
                                              if device.type == "cuda" else "—"),
    }
    figures.update({f"final {k_}": f"{v:.3f}" for k_, v in sorted(metrics.items())})
    res = {
        "kind": "train_run",
        "machine": machine_info(device),
        "model": cfg["encoder"]["model"],
        "train_size": n_train,
        "max_epochs": cfg["trainer"]["max_epochs"],
        "epochs_run": len(epoch_s),
        "config": {k_: cfg[k_] for k_ in RUN_SECTIONS},
        "figures": figures,
        "windows": {"run": [started, t_fit], "caching": [t0, t_cached], "fit": [t_cached, t_fit], "epochs": timer.epochs},
        "metrics": metrics,
        "run_dir": str(run_dir),
        "notes": [],
        "started": started,
        "finished": time.time(),
    }
    atomic_write_json(Path(bench["output"]), res)
    print(figures)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(bench_config(argv, DEFAULT_CONFIG))


if __name__ == "__main__":
    run_command(main)
