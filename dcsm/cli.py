"""Typed setup and small ``fit`` / ``evaluate`` functions behind ``train.py`` and ``evaluate.py``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from . import __version__
from .benchmark_eval import BENCHMARKS, format_benchmark_table, run_benchmark_from_config
from .config import ConfigError, parse_cli
from .data.module import SyntheticDataConfig, SyntheticDataModule, scene_dataset
from .data.shard_module import SHARD_SOURCES, ShardDataConfig, ShardDataModule
from .encoders import EncoderSpec, FrozenCLIP
from .evaluation import category_accuracy, format_table, score_loader
from .features import collate_mcq
from .io import AtomicCheckpointIO, atomic_write_json, atomic_write_text
from .lit import DCSMModule, load_module, to_plain

log = logging.getLogger("dcsm")
LOGGERS = ("wandb", "csv", "none")
LAST_CKPT = "last.ckpt"


SHARD_ONLY = ("train_shards", "val_shards", "shuffle_buffer", "samples_per_epoch")
DATA_SOURCES = ("synthetic", *SHARD_SOURCES)


def data_config(cfg: dict) -> SyntheticDataConfig:
    """The synthetic-data view of the ``data:`` section (also used for synthetic evaluation)."""
    d = {k: v for k, v in cfg["data"].items() if k not in SHARD_ONLY and k != "source"}
    d["categories"], d["val_splits"] = tuple(d["categories"]), tuple(d["val_splits"])
    return SyntheticDataConfig(**d, with_opposite=needs_opposite(cfg))


def needs_opposite(cfg: dict) -> bool:
    """The paired loss trains on each sample's opposite image too."""
    return cfg["loss"]["kind"] == "paired"


def build_datamodule(cfg: dict, encoder: FrozenCLIP) -> SyntheticDataModule | ShardDataModule:
    """``data.source`` -> the DataModule that owns the loaders."""
    d = cfg["data"]
    if d["source"] == "synthetic":
        return SyntheticDataModule(data_config(cfg), encoder)
    if d["source"] in SHARD_SOURCES:
        keys = ("source", "train_shards", "val_shards", "shuffle_buffer", "samples_per_epoch", "seed", "batch_size", "num_workers")
        return ShardDataModule(
            ShardDataConfig(categories=tuple(d["categories"]), with_opposite=needs_opposite(cfg), **{k: d[k] for k in keys}),
            encoder,
        )
    raise ValueError(f"unknown data.source '{d['source']}'. Fix: use one of {DATA_SOURCES}.")


def build_logger(cfg: dict, run_dir: Path) -> Logger | bool:
    lc = cfg["logger"]
    if lc["kind"] == "wandb":
        return WandbLogger(project=lc["project"], name=lc["name"], save_dir=str(run_dir), mode=lc["mode"], config=cfg)
    if lc["kind"] == "csv":
        return CSVLogger(str(run_dir), name="csv")
    if lc["kind"] == "none":
        return False
    raise ValueError(f"unknown logger.kind '{lc['kind']}'. Fix: use one of {LOGGERS}.")


def build_trainer(cfg: dict, run_dir: Path) -> L.Trainer:
    """Trainer with a best-by-monitor checkpoint and an always-fresh ``last.ckpt`` (resume)."""
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
    callbacks: list = [best, last]
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
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
    saved = torch.load(ckpt_path, map_location="cpu", weights_only=False).get("hyper_parameters", {}).get("cfg", {})
    diffs = [d for sec in MODEL_SECTIONS for d in _differences(saved.get(sec), cfg.get(sec), f"{sec}.")]
    if diffs:
        raise ConfigError(
            f"'{ckpt_path}' was trained with another model config ({'; '.join(diffs[:4])}). "
            f"Fix: give this run its own run_dir=..., or resume=null to start over in {cfg['run_dir']}."
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


def setup(cfg: DictConfig | dict) -> tuple[DCSMModule, L.LightningDataModule, L.Trainer, Path]:
    """Seed, build the shared frozen encoder, the module, the data module and the trainer."""
    cfg = to_plain(cfg)
    L.seed_everything(cfg["seed"], workers=True)
    run_dir = Path(cfg["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    encoder = FrozenCLIP(EncoderSpec(**cfg["encoder"]))
    dm = build_datamodule(cfg, encoder)
    module = DCSMModule(cfg, categories=dm.categories, val_names=dm.val_names, encoder=encoder)
    return module, dm, build_trainer(cfg, run_dir), run_dir


def fit(cfg: DictConfig | dict) -> tuple[DCSMModule, Path] | None:
    """Train; returns the module (best weights loaded) and its checkpoint path on global rank 0,
    None on the other ranks (checkpoints live on rank 0's file system)."""
    module, dm, trainer, run_dir = setup(cfg)
    trainer.fit(module, datamodule=dm, ckpt_path=resume_path(to_plain(cfg), run_dir))
    if not trainer.is_global_zero:
        return None
    cb = trainer.checkpoint_callback
    best = cb.best_model_path if cb is not None and cb.best_model_path else str(run_dir / "checkpoints" / LAST_CKPT)
    return load_module(best, encoder=module.encoder), Path(best)


def evaluate_synthetic(module: DCSMModule, splits: Sequence[str], batch_size: int, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Per-split, per-category accuracy of the DCSM head and the CLIP baseline on synthetic splits."""
    dcfg = data_config(module.cfg)
    module.to(device)
    results = {}
    for split in splits:
        ds = scene_dataset(dcfg, split, module.encoder.preprocess)
        loader = DataLoader(ds, batch_size=batch_size, collate_fn=collate_mcq, num_workers=0)
        scores = score_loader(module.head, module.encoder, loader, device=device)
        results[split] = category_accuracy(scores, dcfg.categories)
    return results


def write_report(module: DCSMModule, checkpoint: Path, results: dict[str, Any], out: Path) -> dict[str, Any]:
    """Metrics JSON (CLIP_benchmark-style keys) + Markdown table next to it, both atomic."""
    spec = module.encoder.spec
    report = {
        "model": spec.model,
        "pretrained": spec.pretrained,
        "dataset": "synthetic",
        "task": "multiple_choice",
        "prompt_style": "raw",
        "checkpoint": str(checkpoint),
        "dcsm_version": __version__,
        "encoder": spec.to_dict(),
        "metrics": results,
    }
    table = format_table(results, module.categories)
    atomic_write_json(out, report)
    atomic_write_text(out.with_suffix(".md"), table + "\n")
    return report


USER_ERRORS = (ValueError, FileNotFoundError, KeyError)  # ours carry the file/field and the fix


def run_cli(main: Callable[[], Any]) -> None:
    """Run a CLI entry point; user errors print one line and exit 2 (``DCSM_DEBUG=1``: traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except USER_ERRORS as err:
        if os.environ.get("DCSM_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = to_plain(parse_cli(argv))
    trained = fit(cfg)
    if trained is None:  # not global rank 0: evaluation and reports are rank 0's job
        return {}
    module, ckpt = trained
    results = evaluate_synthetic(module, cfg["eval"]["splits"], cfg["eval"]["batch_size"], default_device())
    out = Path(cfg["run_dir"]) / "metrics.json"
    report = write_report(module, ckpt, results, out)
    print(f"\ncheckpoint: {ckpt}\nmetrics:    {out}\n")
    print(format_table(results, module.categories))
    return report


def evaluate_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = to_plain(parse_cli(argv))
    ev = cfg["eval"]
    if not ev["checkpoint"]:
        raise ValueError("evaluate.py needs eval.checkpoint=<path to a .ckpt written by train.py>.")
    if ev["benchmark"] in BENCHMARKS:  # whatsup | whatsup_qa | negbench: the published files
        report = run_benchmark_from_config(cfg)
        print(f"\nmetrics: {report['output']}\n")
        print(format_benchmark_table(report))
        return report
    if ev["benchmark"] != "synthetic":
        raise ValueError(
            f"unknown eval.benchmark '{ev['benchmark']}'. Fix: eval.benchmark=synthetic|{'|'.join(BENCHMARKS)}."
        )
    module = load_module(ev["checkpoint"])
    results = evaluate_synthetic(module, ev["splits"], ev["batch_size"], default_device())
    ckpt = Path(ev["checkpoint"])
    out = Path(ev["output"]) if ev["output"] else ckpt.parent.parent / f"eval_{ev['benchmark']}.json"
    report = write_report(module, ckpt, results, out)
    print(f"\nmetrics: {out}\n")
    print(format_table(results, module.categories))
    return report
