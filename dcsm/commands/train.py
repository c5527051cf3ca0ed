"""``train.py``: check the config (one line and exit 2 on a bad key or value, before Lightning is
imported), then :func:`dcsm.train.fit.fit` with resume, then the synthetic evaluation report of the
best checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..config_checks import (
    TRAIN_SHARD_KEYS, check_monitor, check_shard_paths, check_validation_data, check_values, check_wandb_login,
    check_writable,
)
from ..config_schema import train_schema
from ..run_lock import RunDirLock, clean_orphan_temp_files
from ..train.choices import SHARD_SOURCES
from .runner import command_config



def diagnostics_callbacks(cfg: dict, run_dir: Path) -> list:
    """``diagnostics.callback``: head diagnostics at validation end (:mod:`dcsm.diagnostics`), files
    under ``run_dir/diagnostics``; none when the list is empty."""
    diag = cfg["diagnostics"]
    if not diag["callback"]:
        return []
    from ..diagnostics.callback import DiagnosticsCallback  # matplotlib etc. only when asked for

    return [DiagnosticsCallback(diag["callback"], diag, out_dir=run_dir / "diagnostics", every_n_epochs=diag["every_n_epochs"])]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``train.py``: fit, then evaluate the best checkpoint on ``eval.splits`` -> ``run_dir/metrics.json``."""
    cfg = command_config(argv)
    shards = cfg["data"]["source"] in SHARD_SOURCES
    if shards:  # before the lock, the encoder and the data are built
        check_shard_paths(cfg, TRAIN_SHARD_KEYS)
    check_validation_data(cfg, "data.val_shards" if shards else "data.val_splits")
    check_monitor(cfg)
    check_writable("run_dir", cfg["run_dir"], "folder")
    check_wandb_login(cfg)
    check_values(cfg, train_schema())  # trainer.precision: its choices are Lightning's (~7 s to import), so last
    # Imported only now: Lightning, torch and the model take seconds to import, and a bad config
    # must fail at once (a typo in well under 10 s).
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from ..eval.synthetic import evaluate_and_report
    from ..features.map_cache import uses_map_cache
    from ..train.dashboard import log_final_table
    from ..train.fit import fit

    uses_map_cache(cfg)  # data.cache=maps with loss.kind=paired or maps.standardize=batch: one line, before anything is built
    run_dir = Path(cfg["run_dir"])
    rank0 = rank_zero_only.rank == 0
    # One run per run_dir, from before the model is built until metrics.json is written (rank 0
    # holds the lock; the other ranks belong to the same run). Temp files of a checkpoint write
    # that a killed run left behind are removed while we hold it.
    with RunDirLock(run_dir, enabled=rank0):
        if rank0:
            for folder in (run_dir, run_dir / "checkpoints"):
                clean_orphan_temp_files(folder)
        trained = fit(cfg, diagnostics_callbacks(cfg, run_dir))
        if trained is None:  # not global rank 0: evaluation and reports are rank 0's job
            return {}
        module, ckpt, training_data, loggers = trained
        out = run_dir / "metrics.json"
        report = evaluate_and_report(
            module.model, module.cfg, module.categories, ckpt, cfg["eval"]["splits"], cfg["eval"]["batch_size"], out,
            f"\ncheckpoint: {ckpt}\nmetrics:    {out}\n", training_data,
        )
        log_final_table(loggers, report["metrics"], module.categories)  # W&B table + summary, CSV
        return report
