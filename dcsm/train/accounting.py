"""The end-of-fit sample accounting of shard streams, summed over DDP ranks.

:class:`DataAccountingCallback` (registered by ``train.py``) reduces every rank's
:meth:`~dcsm.train.shard_data.ShardDataModule.accounting` at the end of ``fit`` (all ranks
call it, so the collective cannot hang), logs one line and writes ``run_dir/data_accounting.json``
on global rank 0 — the file ``train.py`` copies into ``metrics.json`` (``training_data``); it
also reaches the launching process under ``ddp_spawn``. Counts: see
:mod:`dcsm.data.shards.accounting`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..io import atomic_write_json
from ..data.shards.accounting import FIELDS, summarize

log = logging.getLogger("dcsm")
ACCOUNTING_FILE = "data_accounting.json"
SPLITS = ("train", "val")


def _gather(trainer: L.Trainer, row: torch.Tensor) -> torch.Tensor:
    """``(world, n)`` rows of every rank (``(1, n)`` without DDP)."""
    out = trainer.strategy.all_gather(row)
    return out.reshape(-1, row.numel())


class DataAccountingCallback(L.Callback):
    """Sums the shard streams' sample accounting over ranks at the end of ``fit`` (rank 0 writes it)."""

    def __init__(self) -> None:
        self.batches = 0  # train batches this process ran
        self.report: dict[str, Any] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches = 0
        if trainer.is_global_zero:  # never report a previous run's numbers
            (Path(trainer.default_root_dir) / ACCOUNTING_FILE).unlink(missing_ok=True)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.batches += 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "accounting"):
            return
        local = dm.accounting()
        skips = {"train": dm.skips, "val": dm.val_skips}
        row = [float(local.get(s, {}).get(k, 0)) for s in SPLITS for k in FIELDS]
        row += [float(skips[s].count) for s in SPLITS]
        row += [float(trainer.global_step), float(self.batches), float(getattr(pl_module, "samples_seen", 0))]
        rows = _gather(trainer, torch.tensor(row, dtype=torch.float64, device=pl_module.device)).cpu().long().tolist()
        if not trainer.is_global_zero:
            return
        n = len(FIELDS)
        report: dict[str, Any] = {}
        for i, split in enumerate(SPLITS):
            if split in local:
                counts = {k: sum(r[i * n + j] for r in rows) for j, k in enumerate(FIELDS)}
                report[split] = {**summarize(counts, dm.readers[split]),
                                 "manifest_per_epoch": dm.manifest_samples.get(split),
                                 "skip_events": sum(r[2 * n + i] for r in rows)}
        report["ranks"] = [{"rank": r, "global_step": row[-3], "train_batches": row[-2], "samples_seen": row[-1]}
                           for r, row in enumerate(rows)]
        examples = {s: [str(e) for e in skips[s].examples[:5]] for s in SPLITS if skips[s].count}
        if examples:
            report["skip_examples_rank0"] = examples
        self.report = report
        atomic_write_json(Path(trainer.default_root_dir) / ACCOUNTING_FILE, report)
        for split in SPLITS:
            if split in report:
                line = describe(split, report[split])
                (log.warning if report[split]["lost"] or report[split]["dropped"] else log.info)(line)


def describe(split: str, r: dict[str, Any]) -> str:
    """One log line of a split's accounting."""
    what = "training (all epochs read)" if split == "train" else "validation (last whole pass)"
    return (f"data, {what}: {r['used']} of {r['manifest']} listed samples used, {r['lost']} lost "
            f"({100 * r['lost_fraction']:.2f}%), {r['dropped']} dropped ({100 * r['dropped_fraction']:.2f}%); "
            f"{r['repeated']} repeated to even out DDP ranks, {r['duplicates']} duplicate(s) skipped")


def read_accounting(run_dir: str | Path) -> dict[str, Any] | None:
    """``run_dir/data_accounting.json`` as written at the end of the last fit; None when absent."""
    import json

    path = Path(run_dir) / ACCOUNTING_FILE
    return json.loads(path.read_text()) if path.is_file() else None
