"""The one table of what every config key may hold: type, choices, range, null or not.

:func:`schema` maps a dotted key of ``configs/default.yaml`` (or of a command's own defaults,
e.g. ``configs/pretrain_toy_clip.yaml``) to a :class:`Rule`; :func:`dcsm.config_checks.check_values`
applies it to every key present, right after the config is loaded. The choices come from the
modules that own them (``dcsm.model.maps.STANDARDIZE_MODES``, ``dcsm.data.synthetic.scenes.SPLITS``, ...), so a
new mode is added in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

INT, FLOAT, BOOL, STR, CHOICE, CHOICE_LIST, STR_LIST, DEVICES = (
    "int", "float", "bool", "str", "choice", "choice_list", "str_list", "devices")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Rule:
    """What one key may hold.

    kind: ``int`` (not bool), ``float`` (an int is fine; finite), ``bool``, ``str``, ``choice``
    (one of ``choices``), ``choice_list`` (a list of ``choices``), ``str_list`` or ``devices``
    (Lightning's ``devices``: an int >= 1, -1, ``auto``, a non-empty list of GPU indices or
    ``"0,1"``). ``low``/``high``: inclusive bounds (``low_open``: ``low`` excluded);
    ``nullable``: null allowed (the default behaviour applies); ``non_empty``: lists.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    low_open: bool = False
    high_open: bool = False
    non_empty: bool = False

    def bounds(self) -> str:
        """``>= 0 and <= 1`` (empty without bounds)."""
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {_num(self.low)}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return " and ".join(b for b in (lo, hi) if b)

    def describe(self) -> str:
        """The accepted values, for the Fix: part of an error."""
        if self.kind in (CHOICE, CHOICE_LIST):
            one = "|".join(str(c) for c in self.choices)
            text = one if self.kind == CHOICE else f"[a list of {one}]"
        elif self.kind == DEVICES:
            text = "an integer >= 1, -1 (all), auto, or a list of GPU indices like [0,1]"
        elif self.kind in (INT, FLOAT):
            bounds = self.bounds()
            text = f"<{'integer' if self.kind == INT else 'number'}{' ' + bounds if bounds else ''}>"
        else:
            text = {BOOL: "true|false", STR: "<text>", STR_LIST: "[a list of texts]"}[self.kind]
        return f"{text} or null" if self.nullable else text


def _int(low: int | None = None, nullable: bool = False) -> Rule:
    return Rule(INT, low=low, nullable=nullable)


def _float(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           nullable: bool = False) -> Rule:
    return Rule(FLOAT, low=low, high=high, low_open=low_open, high_open=high_open, nullable=nullable)


def _choice(choices: Sequence[Any], nullable: bool = False) -> Rule:
    return Rule(CHOICE, choices=tuple(choices), nullable=nullable)


def _choices(choices: Sequence[Any], non_empty: bool = False) -> Rule:
    return Rule(CHOICE_LIST, choices=tuple(choices), non_empty=non_empty)


SEED = Rule(INT, low=0, high=2**32 - 1)  # what numpy and Lightning's seed_everything accept
BOOL_RULE = Rule(BOOL)
STR_RULE = Rule(STR)
OPT_STR = Rule(STR, nullable=True)
PROBABILITY = _float(0.0, 1.0)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")  # what a plain torch install runs (no TPU/XLA)
CHECKPOINT_MODES = ("min", "max")
LOGGER_KINDS = ("wandb", "csv", "none")
LOGGER_MODES = ("offline", "online", "disabled")
IMAGE_FORMATS = ("png", "jpg")
PRUNING_MODES = ("mean", "zero")
HEAD_WEIGHTINGS = ("variance", "uniform")
PROMPT_SHAPES = ("ring", "box")
ATTENTION_PRIORS = ("uniform", "border")
DETERMINISTIC = (True, False, "warn")


@lru_cache(maxsize=1)
def schema() -> dict[str, Rule]:
    """Dotted key -> :class:`Rule` (imports the owners of the choices on first use)."""
    from .data.benchmarks.dataset import BENCHMARKS
    from .train.shard_data import SHARD_SOURCES
    from .data.synthetic.scenes import CATEGORIES, SPLITS
    from .diagnostics.run import DIAGNOSTICS
    from .model.encoders import PAD_ROWS
    from .model.functional_rows import ROW_INITS
    from .model.maps import STANDARDIZE_MODES
    from .data.benchmarks.prompts import PROMPT_STYLES
    from .model.cnn import LAYOUTS, POOLED

    return {
        "seed": SEED,
        "run_dir": STR_RULE,
        "progress": BOOL_RULE,
        "encoder.model": STR_RULE,
        "encoder.pretrained": OPT_STR,
        "encoder.max_tokens": _int(1),
        "encoder.keep_cls": BOOL_RULE,
        "encoder.seed": SEED,
        "encoder.pad_rows": _choice(PAD_ROWS),
        "functional_rows.seed": SEED,
        "functional_rows.init": _choice(ROW_INITS),
        "maps.standardize": _choice(STANDARDIZE_MODES),
        "maps.eps": _float(0.0),
        "maps.inject_functional_rows": BOOL_RULE,
        "scorer.layout": _choice(LAYOUTS),
        "scorer.channels": _int(1),
        "scorer.hidden": _int(1),
        "scorer.dropout": _float(0.0, 1.0, high_open=True),
        "scorer.conv_dropout": _float(0.0, 1.0, high_open=True),
        "scorer.pooled": _choice(POOLED),
        "optim.lr": _float(0.0, low_open=True),
        "optim.weight_decay": _float(0.0),
        "optim.warmup_steps": _int(0),
        "optim.min_lr_ratio": PROBABILITY,
        "data.source": _choice(("synthetic", *SHARD_SOURCES)),
        "data.shuffle_buffer": _int(0),
        "data.samples_per_epoch": _int(1, nullable=True),
        "data.train_size": _int(1),
        "data.val_size": _int(0),
        "data.test_size": _int(0),
        "data.shifted_size": _int(0),
        "data.heldout_size": _int(0),
        "data.image_size": _int(1),
        "data.num_options": _int(2),
        "data.categories": _choices(CATEGORIES, non_empty=True),
        "data.seed": SEED,
        "data.cache_features": BOOL_RULE,
        "data.batch_size": _int(1),
        "data.encode_batch_size": _int(1),
        "data.num_workers": _int(0),
        "data.val_splits": _choices(SPLITS),
        "trainer.max_epochs": _int(1),
        "trainer.accelerator": _choice(ACCELERATORS),
        "trainer.devices": Rule(DEVICES),
        "trainer.num_nodes": _int(1),
        "trainer.strategy": STR_RULE,
        "trainer.accumulate_grad_batches": _int(1),
        "trainer.log_every_n_steps": _int(1),
        "trainer.check_val_every_n_epoch": _int(1),
        "trainer.deterministic": _choice(DETERMINISTIC),
        "trainer.enable_progress_bar": BOOL_RULE,
        "checkpoint.monitor": OPT_STR,  # which names exist: dcsm.config_checks.check_monitor
        "checkpoint.mode": _choice(CHECKPOINT_MODES),
        "checkpoint.save_top_k": _int(-1),
        "checkpoint.every_n_train_steps": _int(1, nullable=True),
        "logger.kind": _choice(LOGGER_KINDS),
        "logger.project": STR_RULE,
        "logger.name": OPT_STR,
        "logger.mode": _choice(LOGGER_MODES),
        "eval.benchmark": _choice(("synthetic", "all", *BENCHMARKS)),
        "eval.data_root": OPT_STR,
        "eval.splits": _choices(SPLITS),  # [] = train without the final evaluation
        "eval.annotation_files": Rule(STR_LIST),
        "eval.image_root": OPT_STR,
        "eval.prompt_style": _choice(PROMPT_STYLES),
        "eval.baselines": Rule(STR_LIST),
        "eval.batch_size": _int(1),
        "eval.num_workers": _int(0),
        "eval.max_failures": _int(0),
        "eval.output": OPT_STR,
        "eval.diagnostics": _choices(DIAGNOSTICS),
        "synthetic_shards.out": OPT_STR,
        "synthetic_shards.num_samples": _int(1, nullable=True),
        "synthetic_shards.samples_per_shard": _int(1),
        "synthetic_shards.split": _choice(SPLITS),
        "synthetic_shards.start_index": _int(0),
        "synthetic_shards.image_format": _choice(IMAGE_FORMATS),
        "synthetic_shards.overwrite": BOOL_RULE,
        "pair_shards.samples_per_shard": _int(1),
        "pair_shards.overwrite": BOOL_RULE,
        "cache_features.batch_size": _int(1),
        "cache_features.opposite": BOOL_RULE,
        "cache_features.overwrite": BOOL_RULE,
        "miniature_benchmarks.rows": _int(1),
        "export_head.overwrite": BOOL_RULE,
        "diagnostics.callback": _choices(DIAGNOSTICS),
        "diagnostics.every_n_epochs": _int(1),
        "diagnostics.batch_size": _int(1),
        "diagnostics.heads.top_k": _int(1),
        "diagnostics.heads.weighting": _choice(HEAD_WEIGHTINGS),
        "diagnostics.pruning.mode": _choice(PRUNING_MODES),
        "diagnostics.pruning.strength": PROBABILITY,
        "diagnostics.center_bias.grid": _int(1),
        "diagnostics.center_bias.repeats": _int(1),
        "diagnostics.center_bias.num_options": _int(2),
        "diagnostics.center_bias.n_bootstrap": _int(1),
        "diagnostics.center_bias.ci": _float(0.0, 1.0, low_open=True, high_open=True),
        "diagnostics.center_bias.object_size": _float(0.0, 1.0, low_open=True),
        "diagnostics.center_bias.mitigations.prompt_shape": _choice(PROMPT_SHAPES),
        "diagnostics.center_bias.mitigations.attention_prior": _choice(ATTENTION_PRIORS),
    }


@lru_cache(maxsize=1)
def train_schema() -> dict[str, Rule]:
    """The keys whose choices live in Lightning's modules (checked by ``train.py``, which imports
    Lightning anyway; the other commands start without it)."""
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT  # every precision Lightning accepts

    from .train.module import LOSSES

    precisions = tuple(v for arg in get_args(_PRECISION_INPUT) for v in get_args(arg))
    return {"loss.kind": _choice(LOSSES), "trainer.precision": _choice(precisions)}


def violation(rule: Rule, value: Any) -> bool:
    """True when ``value`` breaks ``rule``."""
    if value is None:
        return not rule.nullable
    kind = rule.kind
    if kind == BOOL:
        return not isinstance(value, bool)
    if kind == STR:
        return not isinstance(value, str) or not value
    if kind == STR_LIST:
        return not isinstance(value, list) or not all(isinstance(v, str) for v in value)
    if kind == CHOICE:
        return isinstance(value, (list, dict)) or not any(value == c and type(value) is type(c) for c in rule.choices)
    if kind == CHOICE_LIST:
        return (not isinstance(value, list) or (rule.non_empty and not value)
                or not all(isinstance(v, str) and v in rule.choices for v in value))
    if kind == DEVICES:
        if isinstance(value, bool):
            return True
        if isinstance(value, int):
            return not (value >= 1 or value == -1)
        if isinstance(value, str):
            return value != "auto" and not all(p.strip().isdigit() for p in value.split(",")) or value.strip(", ") == ""
        return not (isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))
    if kind in (INT, FLOAT):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == INT and not isinstance(value, int)):
            return True
        if not math.isfinite(value):
            return True
        if rule.low is not None and (value < rule.low or (rule.low_open and value == rule.low)):
            return True
        return rule.high is not None and (value > rule.high or (rule.high_open and value == rule.high))
    raise AssertionError(f"unknown rule kind {kind}")
