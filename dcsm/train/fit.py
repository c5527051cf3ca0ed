"""Typed setup and ``fit`` of a training run (litgpt ``pretrain.py`` style): the encoder, the data
module, the :class:`~dcsm.train.module.DCSMModule`, the Lightning trainer with its callbacks, resume.
``train.py`` (:mod:`dcsm.commands.train`) checks the config first and imports this module after, so a
typo fails before Lightning is imported."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig

from ..config import ConfigError, to_plain
from ..checkpoints.finite_load import check_finite
from ..checkpoints.load import checkpoint_config, head_tensors
from ..checkpoints.safe_load import read_checkpoint
from ..data.synthetic.dataset import SyntheticDataConfig
from ..model.encoders import EncoderSpec, FrozenCLIP
from .accounting import DataAccountingCallback, read_accounting
from .checkpoint_io import AtomicCheckpointIO
from .dashboard import DashboardCallback
from .module import DCSMModule, load_module
from .nan_guard import NonFiniteLossGuard
from .ema import CKPT_KEY as EMA_CKPT_KEY, HeadEMA
from .rng_state import RNGStateCallback
from .shard_data import ShardDataConfig, ShardDataModule
from .choices import DATA_SOURCES, SHARD_SOURCES
from .synthetic_data import SyntheticDataModule


log = logging.getLogger("dcsm")
LOGGERS = ("wandb", "csv", "none")
LAST_CKPT = "last.ckpt"




def build_datamodule(cfg: dict, encoder: FrozenCLIP) -> SyntheticDataModule | ShardDataModule:
    """``data.source`` -> the DataModule that owns the loaders."""
    d = cfg["data"]
    if d["source"] == "synthetic":
        return SyntheticDataModule(SyntheticDataConfig.from_config(cfg), encoder)
    if d["source"] in SHARD_SOURCES:
        return ShardDataModule(ShardDataConfig.from_config(cfg), encoder)
    raise ValueError(f"unknown data.source '{d['source']}'. Fix: use one of {DATA_SOURCES}.")


def build_logger(cfg: dict, run_dir: Path) -> Logger | bool:
    lc = cfg["logger"]
    if lc["kind"] == "wandb":
        # Processes started by strategy=ddp_spawn attach to this run but take its folder from
        # WANDB_DIR: without it their media (epoch panels, diagnostics) land in ./wandb of the cwd.
        os.environ["WANDB_DIR"] = str(run_dir)
        return WandbLogger(project=lc["project"], name=lc["name"], save_dir=str(run_dir), mode=lc["mode"], config=cfg)
    if lc["kind"] == "csv":
        return CSVLogger(str(run_dir), name="csv")
    if lc["kind"] == "none":
        return False
    raise ValueError(f"unknown logger.kind '{lc['kind']}'. Fix: use one of {LOGGERS}.")


def build_trainer(cfg: dict, run_dir: Path, extra_callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    """Trainer with a best-by-monitor checkpoint and an always-fresh ``last.ckpt`` (resume), our
    callbacks, then ``extra_callbacks``."""
    ck = cfg["checkpoint"]
    ckpt_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best-{epoch}-{step}", monitor=ck["monitor"], mode=ck["mode"],
        save_top_k=ck["save_top_k"], every_n_train_steps=ck["every_n_train_steps"],
    )
    # Lightning refreshes save_last only when the top-k improves; resume needs the newest state.
    last = ModelCheckpoint(
        dirpath=ckpt_dir, filename=Path(LAST_CKPT).stem, monitor=None, save_top_k=1,
        every_n_train_steps=ck["every_n_train_steps"], enable_version_counter=False,
    )
    logger = build_logger(cfg, run_dir)
    callbacks: list = [best, last, NonFiniteLossGuard()]
    callbacks.append(DataAccountingCallback())  # shard streams: used/lost/dropped over all ranks -> metrics.json
    callbacks.append(RNGStateCallback(cfg["seed"]))  # generator states in checkpoints: exact resume with dropout
    if cfg["optim"].get("ema_decay") is not None:
        callbacks.append(HeadEMA(cfg["optim"]["ema_decay"]))  # validated, checkpointed and exported weights: the average
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
        callbacks.append(DashboardCallback(cfg, run_dir))  # run config, encoder record, epoch panels (dcsm.train.dashboard)
    callbacks.extend(extra_callbacks)  # e.g. train.py's head diagnostics (dcsm.diagnostics sits above train/)
    return L.Trainer(
        **cfg["trainer"], default_root_dir=str(run_dir), logger=logger, callbacks=callbacks, plugins=[AtomicCheckpointIO()]
    )


MODEL_SECTIONS = ("encoder", "functional_rows", "maps", "scorer", "loss")  # what a resumed run may not change


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} in the checkpoint, {new!r} now"]


def check_resumable(cfg: dict, ckpt_path: str) -> None:
    """Refuse to resume a checkpoint whose model-defining config differs from ``cfg``."""
    ckpt = read_checkpoint(ckpt_path)  # one clear error for a corrupt or unsafe last.ckpt
    saved = checkpoint_config(ckpt)
    check_finite(ckpt_path, head_tensors(ckpt), saved)  # a diverged last.ckpt is not resumed
    diffs = [d for sec in MODEL_SECTIONS for d in _differences(saved.get(sec), cfg.get(sec), f"{sec}.")]
    if diffs:
        raise ConfigError(
            f"'{ckpt_path}' was trained with another model config ({'; '.join(diffs[:4])}). "
            f"Fix: give this run its own run_dir=..., or resume=null to start over in {cfg['run_dir']}."
        )
    ema = ckpt.get(EMA_CKPT_KEY)
    if isinstance(ema, dict) and cfg.get("optim", {}).get("ema_decay") is None:
        # its state_dict is the average; without HeadEMA to put the raw weights back, training would
        # silently go on from the averaged head
        raise ConfigError(
            f"'{ckpt_path}' was trained with optim.ema_decay={ema.get('decay')} (its head is the average, the raw "
            f"weights ride along) and this run has EMA off. Fix: optim.ema_decay={ema.get('decay')}, or resume=null "
            f"to start over in {cfg['run_dir']}."
        )


def resume_path(cfg: dict, run_dir: Path) -> str | None:
    """The checkpoint to resume from (``resume: auto|null|PATH``), checked against ``cfg``."""
    r = cfg.get("resume")
    if r in (None, False, "null"):
        return None
    if r == "auto":
        last = run_dir / "checkpoints" / LAST_CKPT
        path = str(last) if last.is_file() else None
    elif not os.path.isfile(r):
        raise FileNotFoundError(f"resume checkpoint '{r}' does not exist. Fix: resume=auto, resume=null or an existing path.")
    else:
        path = str(r)
    if path is not None:
        check_resumable(cfg, path)
    return path


def setup(cfg: DictConfig | dict, extra_callbacks: Sequence[L.Callback] = ()
          ) -> tuple[DCSMModule, L.LightningDataModule, L.Trainer, Path]:
    """Seed, build the shared frozen encoder, the module, the data module and the trainer (with
    ``extra_callbacks``)."""
    cfg = to_plain(cfg)
    L.seed_everything(cfg["seed"], workers=True)
    run_dir = Path(cfg["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    encoder = FrozenCLIP(EncoderSpec(**cfg["encoder"]))
    dm = build_datamodule(cfg, encoder)
    module = DCSMModule(cfg, categories=dm.categories, val_names=dm.val_names, encoder=encoder)
    return module, dm, build_trainer(cfg, run_dir, extra_callbacks), run_dir


class NoValidationError(ValueError):
    """A run ended without the validation metric its best checkpoint is chosen by."""


def data_summary(dm: L.LightningDataModule, run_dir: Path | None = None) -> dict[str, Any]:
    """Where the shard streams' samples went (shard sources; all ranks): ``lost_samples`` and
    ``skip_events`` of the training stream, and per split (``train``, ``val``) the
    used/lost/dropped/repeated counts of :mod:`dcsm.train.accounting`."""
    skips = getattr(dm, "skips", None)
    if skips is None:
        return {}
    report = read_accounting(run_dir) if run_dir is not None else None
    if report is None:  # no fit end reached (or called outside train.py): this process's counters
        report = {"train": {"lost": skips.lost_samples, "skip_events": skips.count}}
    train = report.get("train", {})
    return {"skip_events": train.get("skip_events", 0), "lost_samples": train.get("lost", 0),
            "skip_examples": report.pop("skip_examples_rank0", {}).get("train") or [str(e) for e in skips.examples[:5]],
            **report}


def check_validated(cfg: dict, trainer: L.Trainer, dm: L.LightningDataModule) -> None:
    """A monitored best checkpoint must exist at the end of a run: no validation result is a
    failed run, not one that quietly falls back to ``last.ckpt``."""
    cb = trainer.checkpoint_callback
    monitor = cfg["checkpoint"]["monitor"]
    if cb is None or monitor is None or cb.best_model_path or trainer.interrupted:
        return
    val_key = "data.val_shards" if cfg["data"]["source"] in SHARD_SOURCES else "data.val_splits"
    if not getattr(dm, "val_names", ()):
        why = f"there is no validation data ({val_key} is empty)"
    else:
        lost = data_summary(dm, Path(cfg["run_dir"])).get("lost_samples", 0)
        why = f"validation never logged it ({lost} training sample(s) lost to corrupt shards)"
    raise NoValidationError(
        f"training in {cfg['run_dir']} ended without checkpoint.monitor={monitor}, so no best checkpoint "
        f"was written: {why}. Fix: set {val_key}, or checkpoint.monitor=null to keep the newest checkpoint."
    )


def fit(cfg: DictConfig | dict, extra_callbacks: Sequence[L.Callback] = ()
        ) -> tuple[DCSMModule, Path, dict[str, Any], list[Logger]] | None:
    """Train; returns the module (best weights loaded), its checkpoint path, what the data
    stream skipped (:func:`data_summary`) and the run's loggers on global rank 0, None on the
    other ranks (checkpoints live on rank 0's file system).

    Raises:
        NoValidationError: the run ended without the monitored validation metric.
    """
    ckpt_path = resume_path(to_plain(cfg), Path(cfg["run_dir"]))  # checked before anything is built
    module, dm, trainer, run_dir = setup(cfg, extra_callbacks)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    if not trainer.is_global_zero:
        return None
    check_validated(to_plain(cfg), trainer, dm)
    cb = trainer.checkpoint_callback
    best = cb.best_model_path if cb is not None and cb.best_model_path else str(run_dir / "checkpoints" / LAST_CKPT)
    return load_module(best, encoder=module.encoder), Path(best), data_summary(dm, run_dir), trainer.loggers
