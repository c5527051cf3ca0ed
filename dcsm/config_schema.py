"""The one table of what every config key may hold: type, choices, range, null or not.

:func:`schema` maps a dotted key of ``configs/default.yaml`` (or of a command's own defaults,
e.g. ``configs/pretrain_toy_clip.yaml``) to a :class:`Rule`; :func:`dcsm.config_checks.check_values`
applies it to every key present, right after the config is loaded. The choices come from the
modules that own them (``dcsm.model.maps.STANDARDIZE_MODES``, ``dcsm.data.synthetic.scenes.SPLITS``, ...), so a
new mode is added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import Any, Sequence

INT, FLOAT, BOOL, STR, CHOICE, CHOICE_LIST, STR_LIST, DEVICES = (
    "int", "float", "bool", "str", "choice", "choice_list", "str_list", "devices")
INT_LIST, FLOAT_LIST, STR_OR_LIST, NAME_OR_LIST, NAME_OR_FILE, DEVICE = (
    "int_list", "float_list", "str_or_list", "name_or_list", "name_or_file", "device")
#: The kinds whose values are names a typo can miss (what the typo probes of tests/test_config_schema.py cover).
NAMED_KINDS = (CHOICE, CHOICE_LIST, NAME_OR_LIST, NAME_OR_FILE, DEVICE)
TORCH_DEVICES = ("auto", "cpu", "cuda", "mps")  # plus cuda:<index>; auto: cuda when available (dcsm.model.device.default_device)


def show(choice: Any) -> str:
    """A choice as the command line writes it (``true``/``false`` for booleans)."""
    return str(choice).lower() if isinstance(choice, bool) else str(choice)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Rule:
    """What one key may hold.

    kind: ``int`` (not bool), ``float`` (an int is fine; finite), ``bool``, ``str`` (non-empty),
    ``choice`` (one of ``choices``), ``choice_list`` (a list of ``choices``), ``str_list``,
    ``int_list`` / ``float_list`` (lists of numbers within the bounds), ``str_or_list`` (a text or
    a non-empty list of texts: a path/pattern or several), ``name_or_list`` (one of ``choices`` or
    a non-empty list of texts, e.g. ``functional_rows.lexicon``), ``name_or_file`` (one of
    ``choices`` or the path of an existing file, e.g. ``resume``), ``device`` (a torch device:
    ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) or ``devices`` (Lightning's ``devices``: an
    int >= 1, -1, ``auto``, a non-empty list of GPU indices or ``"0,1"``).
    ``low``/``high``: inclusive bounds (``low_open``: ``low`` excluded), of the items for lists;
    ``also``: values allowed outside the bounds (``trainer.max_steps``: -1); ``nullable``: null
    allowed (the default behaviour applies); ``non_empty``: lists; ``length``: lists of exactly
    that many items.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    low_open: bool = False
    high_open: bool = False
    non_empty: bool = False
    also: tuple[Any, ...] = ()
    length: int | None = None

    def bounds(self) -> str:
        """``>= 0 and <= 1`` (empty without bounds)."""
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {_num(self.low)}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return " and ".join(b for b in (lo, hi) if b)

    def describe(self) -> str:
        """The accepted values, for the Fix: part of an error."""
        one = "|".join(dict.fromkeys(show(c) for c in self.choices))  # 16 and "16" read the same on the command line
        bounds = self.bounds()
        if self.kind in (CHOICE, CHOICE_LIST):
            text = one if self.kind == CHOICE else f"[a {'non-empty ' if self.non_empty else ''}list of {one}]"
        elif self.kind == DEVICES:
            text = "an integer >= 1, -1 (all), auto, or a list of GPU indices like [0,1]"
        elif self.kind in (INT, FLOAT):
            text = f"<{'integer' if self.kind == INT else 'number'}{' ' + bounds if bounds else ''}>"
            text += "".join(f" or {c}" for c in self.also)
        elif self.kind in (INT_LIST, FLOAT_LIST):
            item = f"{'integers' if self.kind == INT_LIST else 'numbers'}{' ' + bounds if bounds else ''}"
            text = (f"[{self.length} {item}]" if self.length
                    else f"[a {'non-empty ' if self.non_empty else ''}list of {item}]")
        elif self.kind == STR_OR_LIST:
            text = "<text> or [a non-empty list of texts]"
        elif self.kind == NAME_OR_LIST:
            text = f"{one} or [a non-empty list of texts]"
        elif self.kind == NAME_OR_FILE:
            text = f"{one} or <an existing file>"
        elif self.kind == DEVICE:
            text = f"{one}|cuda:<index>"
        else:
            text = {BOOL: "true|false", STR: "<text>",
                    STR_LIST: f"[a {'non-empty ' if self.non_empty else ''}list of texts]"}[self.kind]
        return f"{text} or null" if self.nullable else text


def _int(low: int | None = None, nullable: bool = False, high: int | None = None) -> Rule:
    return Rule(INT, low=low, high=high, nullable=nullable)


def _float(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           nullable: bool = False) -> Rule:
    return Rule(FLOAT, low=low, high=high, low_open=low_open, high_open=high_open, nullable=nullable)


def _choice(choices: Sequence[Any], nullable: bool = False) -> Rule:
    return Rule(CHOICE, choices=tuple(choices), nullable=nullable)


def _choices(choices: Sequence[Any], non_empty: bool = False) -> Rule:
    return Rule(CHOICE_LIST, choices=tuple(choices), non_empty=non_empty)


def _ints(low: int | None = None, high: int | None = None, length: int | None = None, non_empty: bool = True) -> Rule:
    return Rule(INT_LIST, low=low, high=high, length=length, non_empty=non_empty)


def _floats(low: float | None = None, high: float | None = None, length: int | None = None, high_open: bool = False,
            non_empty: bool = True) -> Rule:
    return Rule(FLOAT_LIST, low=low, high=high, length=length, high_open=high_open, non_empty=non_empty)


SEED = Rule(INT, low=0, high=2**32 - 1)  # what numpy and Lightning's seed_everything accept
BOOL_RULE = Rule(BOOL)
STR_RULE = Rule(STR)
OPT_STR = Rule(STR, nullable=True)
PATHS = Rule(STR_OR_LIST, nullable=True)  # a path / brace pattern / url, or a list of them
SEEDS = Rule(INT_LIST, low=0, high=2**32 - 1, non_empty=True)
RGB_RULE = Rule(INT_LIST, low=0, high=255, length=3)
DEFAULT_OR_FILE = Rule(NAME_OR_FILE, choices=("default",))  # the packaged file, or the path of one
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
#: Rules as data, ``key: (kind, *args)``, from modules that must not import this one (CONTROLLED_KEYS, SCENE_KEYS).
TABLE_KINDS = {"str": lambda: STR_RULE, "seed": lambda: SEED, "seeds": lambda: SEEDS, "int": _int, "ints": _ints,
               "float": _float, "floats": _floats, "choice": _choice, "choices": lambda c: _choices(c, non_empty=True),
               "device": lambda: Rule(DEVICE, choices=TORCH_DEVICES)}


@lru_cache(maxsize=1)
def schema() -> dict[str, Rule]:
    """Dotted key -> :class:`Rule` (imports the owners of the choices on first use)."""
    o = _owners()
    return {**_run_rules(o), **_training_rules(o), **_data_prep_rules(o), **_diagnostics_rules(o), **_other_command_rules(o)}


def _owners() -> SimpleNamespace:
    """The allowed values, each from the module that owns it (imported here, on first use)."""
    from .data.benchmarks.registry import BENCHMARKS
    from .train.choices import DATA_SOURCES, LOSSES, SHARD_SOURCES
    from .data.reference_layout import PHRASINGS, REFERENCE_SOURCES
    from .data.synthetic.vocab import (SCENE_KEYS, CATEGORIES, COLOURS, MAX_NUM_OPTIONS, MIN_IMAGE_SIZE, MIN_NUM_OPTIONS, SHAPES,
                                       SPLITS)
    from .data.synthetic.styles import STYLES
    from .data.synthetic.templates import TEMPLATE_CHOICES
    from .data.synthetic.transfer import TRANSFER_FILES
    from .diagnostics.names import CONTROLLED_KEYS, DIAGNOSTICS
    from .model.choices import PAD_ROWS, PATCH_SOURCES
    from .features.map_cache import CACHE_KINDS
    from .features.memory import CACHE_DEVICES
    from .features.shards import FEATURE_DTYPES
    from .model.functional_rows import ROW_INITS
    from .model.maps import STANDARDIZE_MODES
    from .data.benchmarks.prompts import PROMPT_STYLES
    from .model.cnn import COMPILE_CHOICES, COMPILE_MODES, LAYOUTS, POOLED

    scene_options = _int(MIN_NUM_OPTIONS, high=MAX_NUM_OPTIONS)  # what dcsm.data.synthetic renders
    scene_size = _int(MIN_IMAGE_SIZE, nullable=True)  # null: the encoder's input size
    categories = _choices(CATEGORIES, non_empty=True)
    scenes = {  # diagnostics.image_set / diagnostics.task: synthetic scenes (dcsm.diagnostics.pruning.synthetic_task)
        "split": _choice(SPLITS), "size": _int(1), "seed": SEED, "render_size": scene_size,
        "num_options": scene_options, "categories": categories,
    }
    return SimpleNamespace(
        BENCHMARKS=BENCHMARKS, SHARD_SOURCES=SHARD_SOURCES, DATA_SOURCES=DATA_SOURCES, LOSSES=LOSSES, PHRASINGS=PHRASINGS,
        REFERENCE_SOURCES=REFERENCE_SOURCES, CATEGORIES=CATEGORIES, COLOURS=COLOURS, SHAPES=SHAPES, SPLITS=SPLITS,
        STYLES=STYLES, TEMPLATE_CHOICES=TEMPLATE_CHOICES, TRANSFER_FILES=tuple(TRANSFER_FILES), DIAGNOSTICS=DIAGNOSTICS, CONTROLLED_KEYS=CONTROLLED_KEYS, PATCH_SOURCES=PATCH_SOURCES, PAD_ROWS=PAD_ROWS,
        CACHE_KINDS=CACHE_KINDS, CACHE_DEVICES=CACHE_DEVICES, FEATURE_DTYPES=FEATURE_DTYPES, ROW_INITS=ROW_INITS,
        STANDARDIZE_MODES=STANDARDIZE_MODES, SCENE_KEYS=SCENE_KEYS, PROMPT_STYLES=PROMPT_STYLES, COMPILE_CHOICES=COMPILE_CHOICES,
        COMPILE_MODES=COMPILE_MODES, LAYOUTS=LAYOUTS, POOLED=POOLED, MIN_IMAGE_SIZE=MIN_IMAGE_SIZE, scene_options=scene_options,
        scene_size=scene_size, categories=categories, scenes=scenes,
    )


def _run_rules(o: SimpleNamespace) -> dict[str, Rule]:
    """Rules of the run: seed, encoder, functional rows, maps, scorer, optimiser."""
    return {
        "seed": SEED,
        "run_dir": STR_RULE,
        "resume": Rule(NAME_OR_FILE, choices=("auto", False), nullable=True),  # auto | null (or false) | an existing .ckpt
        "progress": BOOL_RULE,
        "encoder.model": STR_RULE,
        "encoder.pretrained": OPT_STR,
        "encoder.max_tokens": _int(1),
        "encoder.keep_cls": BOOL_RULE,
        "encoder.seed": SEED,
        "encoder.pad_rows": _choice(o.PAD_ROWS),
        "encoder.patch_source": _choice(o.PATCH_SOURCES),
        "encoder.tokenizer": OPT_STR,
        "functional_rows.lexicon": Rule(NAME_OR_LIST, choices=("default",)),  # dcsm.model.functional_rows.resolve_lexicon
        "functional_rows.seed": SEED,
        "functional_rows.init": _choice(o.ROW_INITS),
        "maps.standardize": _choice(o.STANDARDIZE_MODES),
        "maps.eps": _float(0.0),
        "maps.inject_functional_rows": BOOL_RULE,
        "scorer.layout": _choice(o.LAYOUTS),
        "scorer.channels": _int(1),
        "scorer.hidden": _int(1),
        "scorer.dropout": _float(0.0, 1.0, high_open=True),
        "scorer.conv_dropout": _float(0.0, 1.0, high_open=True),
        "scorer.pooled": _choice(o.POOLED),
        "loss.kind": _choice(o.LOSSES),
        "optim.lr": _float(0.0, low_open=True),
        "optim.weight_decay": _float(0.0), "optim.warmup_steps": _int(0),
        "optim.min_lr_ratio": PROBABILITY,
        "optim.ema_decay": _float(0.0, 1.0, low_open=True, high_open=True, nullable=True),
        "optim.steps": _int(1),
        "optim.batch_size": _int(2),  # in-batch negatives: batch_size - 1
        "optim.betas": _floats(0.0, 1.0, length=2, high_open=True),
        "optim.eps": _float(0.0),
        "optim.max_logit_scale": _float(1.0),  # the clamp is [0, log(max_logit_scale)]
    }


def _training_rules(o: SimpleNamespace) -> dict[str, Rule]:
    """Rules of data, compile, trainer, checkpoint, logger, dashboard, eval."""
    return {
        "data.source": _choice(o.DATA_SOURCES),
        "data.train_shards": PATHS,
        "data.val_shards": PATHS,
        "data.shuffle_buffer": _int(0),
        "data.samples_per_epoch": _int(1, nullable=True),
        "data.train_size": _int(1),
        "data.val_size": _int(0),
        "data.test_size": _int(0),
        "data.shifted_size": _int(0),
        "data.heldout_size": _int(0),
        "data.heldout_templates_size": _int(0),
        "data.image_size": _int(1),
        "data.num_options": _int(2),
        "data.categories": _choices(o.CATEGORIES, non_empty=True),
        "data.seed": SEED,
        "compile.head": _choice(o.COMPILE_CHOICES),
        "compile.mode": _choice(o.COMPILE_MODES),
        "data.cache_features": BOOL_RULE,
        "data.cache": _choice(o.CACHE_KINDS),
        "data.cache_device": _choice(o.CACHE_DEVICES),
        "data.cache_device_max_fraction": _float(0, 1, low_open=True),
        "data.batch_size": _int(1),
        "data.encode_batch_size": _int(1),
        "data.num_workers": _int(0),
        "data.val_splits": _choices(o.SPLITS),
        "trainer.max_epochs": _int(1),
        # Lightning's max_steps: -1 = no step limit (max_epochs decides); 0 would train nothing and exit 0
        "trainer.max_steps": Rule(INT, low=1, also=(-1,)),
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
        "dashboard.per_category": _int(0),
        "dashboard.seed": SEED,
        "dashboard.split": _choice(o.SPLITS, nullable=True),
        "dashboard.every_n_epochs": _int(1),
        "dashboard.keep_epochs": _int(1),
        "eval.checkpoint": PATHS,  # one .ckpt, or a list of them (eval.benchmark=all)
        "eval.benchmark": _choice(("synthetic", "all", *o.BENCHMARKS)),
        "eval.data_root": OPT_STR,
        "eval.splits": _choices(o.SPLITS),  # [] = train without the final evaluation
        "eval.annotation_files": Rule(STR_LIST),
        "eval.image_root": OPT_STR,
        "eval.prompt_style": _choice(o.PROMPT_STYLES),
        "eval.baselines": Rule(STR_LIST),
        "eval.batch_size": _int(1),
        "eval.num_workers": _int(0),
        "eval.max_failures": _int(0),
        "eval.output": OPT_STR,
        "eval.diagnostics": _choices(o.DIAGNOSTICS),
        "eval.size": _int(1),
        "eval.image_size": _int(o.MIN_IMAGE_SIZE),
        "eval.fixed_scenes": _int(1),
        "eval.max_tokens": _int(1),
        "eval.own_seed": SEED,  # pretrain_toy_clip: the held-out stream of its own-distribution binding probe
        # configs/from_reference.yaml (dcsm.commands.from_reference)
    }


def _data_prep_rules(o: SimpleNamespace) -> dict[str, Rule]:
    """Rules of the data-preparation commands."""
    return {
        "synthetic_shards.out": OPT_STR,
        "synthetic_shards.num_samples": _int(1, nullable=True),
        "synthetic_shards.samples_per_shard": _int(1),
        "synthetic_shards.split": _choice(o.SPLITS),
        "synthetic_shards.seed": SEED,
        "synthetic_shards.image_size": _int(o.MIN_IMAGE_SIZE),
        "synthetic_shards.num_options": o.scene_options,
        "synthetic_shards.categories": o.categories,
        "synthetic_shards.style": _choice(tuple(o.STYLES), nullable=True),
        "synthetic_shards.start_index": _int(0),
        "synthetic_shards.image_format": _choice(IMAGE_FORMATS),
        "synthetic_shards.prefix": STR_RULE,
        "synthetic_shards.overwrite": BOOL_RULE,
        "pair_shards.input": OPT_STR,
        "pair_shards.image_root": OPT_STR,
        "pair_shards.out": OPT_STR,
        "pair_shards.num_options": _int(2),
        "pair_shards.samples_per_shard": _int(1),
        "pair_shards.seed": SEED,
        "pair_shards.prefix": STR_RULE,
        "pair_shards.key_prefix": OPT_STR,
        "pair_shards.overwrite": BOOL_RULE,
        "cache_features.shards": PATHS,
        "cache_features.out": OPT_STR,
        "cache_features.batch_size": _int(1),
        "cache_features.device": Rule(DEVICE, choices=TORCH_DEVICES),
        "cache_features.opposite": BOOL_RULE,
        "cache_features.kind": _choice(o.CACHE_KINDS),
        "cache_features.dtype": _choice(o.FEATURE_DTYPES),
        "cache_features.overwrite": BOOL_RULE,
        "miniature_benchmarks.fixtures": STR_RULE,
        "miniature_benchmarks.out": STR_RULE,
        "miniature_benchmarks.rows": _int(1),
        "export_head.checkpoint": OPT_STR,
        "export_head.out": OPT_STR,
        "export_head.overwrite": BOOL_RULE,
        "format_transfer.out": OPT_STR,
        "format_transfer.rows": _int(4),
        "format_transfer.seed": SEED,
        "format_transfer.image_size": _int(o.MIN_IMAGE_SIZE),
        "format_transfer.style": _choice(tuple(o.STYLES)),
        "format_transfer.templates": _choice(o.TEMPLATE_CHOICES),
        "format_transfer.files": _choices(o.TRANSFER_FILES),
        "format_transfer.overwrite": BOOL_RULE,
    }


def _diagnostics_rules(o: SimpleNamespace) -> dict[str, Rule]:
    """Rules of diagnostics."""
    return {
        "diagnostics.callback": _choices(o.DIAGNOSTICS),
        "diagnostics.every_n_epochs": _int(1),
        "diagnostics.batch_size": _int(1),
        **{f"diagnostics.{section}.{k}": r for section in ("image_set", "task") for k, r in o.scenes.items()},
        "diagnostics.text_bank": DEFAULT_OR_FILE,  # one description per line
        "diagnostics.concept_lexicon": DEFAULT_OR_FILE,  # JSON {group: [words]}
        "diagnostics.textspan.m": _int(1),
        "diagnostics.textspan.span_rank": _int(1, nullable=True),
        "diagnostics.heads.top_k": _int(1),
        "diagnostics.heads.weighting": _choice(HEAD_WEIGHTINGS),
        "diagnostics.pruning.ks": _ints(1),  # values above the head count are dropped
        "diagnostics.pruning.seeds": SEEDS,
        "diagnostics.pruning.mode": _choice(PRUNING_MODES),
        "diagnostics.pruning.strength": PROBABILITY,
        # diagnostics.center_bias: what depends on another key (centre_ring <= (grid-1)//2, object_size
        # <= 1/grid, num_options <= objects) is checked by dcsm.diagnostics.center_bias.SweepConfig
        "diagnostics.center_bias.grid": _int(3),
        "diagnostics.center_bias.centre_ring": _int(1),
        "diagnostics.center_bias.object_size": _float(0.0, 1.0, low_open=True),
        "diagnostics.center_bias.colours": _choices(tuple(o.COLOURS), non_empty=True),
        "diagnostics.center_bias.shapes": _choices(o.SHAPES, non_empty=True),
        "diagnostics.center_bias.caption": STR_RULE,
        "diagnostics.center_bias.background": RGB_RULE,
        "diagnostics.center_bias.background_jitter": _int(0, high=255),
        "diagnostics.center_bias.position_jitter": PROBABILITY,
        "diagnostics.center_bias.repeats": _int(1),
        "diagnostics.center_bias.render_size": _int(1, nullable=True),
        "diagnostics.center_bias.seed": SEED,
        "diagnostics.center_bias.num_options": _int(2),
        "diagnostics.center_bias.n_bootstrap": _int(1),
        "diagnostics.center_bias.ci": _float(0.0, 1.0, low_open=True, high_open=True),
        "diagnostics.center_bias.mitigations.prompt_strengths": _floats(0.0, 1.0),
        "diagnostics.center_bias.mitigations.prompt_shape": _choice(PROMPT_SHAPES),
        "diagnostics.center_bias.mitigations.prompt_colour": RGB_RULE,
        "diagnostics.center_bias.mitigations.prompt_width": _float(0.0, 1.0, low_open=True),
        "diagnostics.center_bias.mitigations.attention_strengths": _floats(0.0, 1.0),
        "diagnostics.center_bias.mitigations.attention_prior": _choice(ATTENTION_PRIORS),
        "diagnostics.center_bias.mitigations.attention_layer": Rule(INT),  # -1: the last (range: the tower's depth)
        "diagnostics.center_bias.cross_eyed.pair": STR_RULE,
        "diagnostics.center_bias.cross_eyed.single": STR_RULE,
        "diagnostics.center_bias.cross_eyed.unrelated": STR_RULE,
        "diagnostics.center_bias.cross_eyed.annotation_files": Rule(STR_LIST),
        "diagnostics.center_bias.cross_eyed.image_root": OPT_STR,
        "diagnostics.center_bias.cross_eyed.synthetic.split": _choice(o.SPLITS),
        "diagnostics.center_bias.cross_eyed.synthetic.size": _int(0),
        "diagnostics.center_bias.cross_eyed.synthetic.seed": SEED,
        "diagnostics.center_bias.cross_eyed.synthetic.categories": o.categories,
        "diagnostics.center_bias.cross_eyed.synthetic.centre_region": _float(0.0, 1.0, low_open=True),
        **{f"controlled.{k}": TABLE_KINDS[v[0]](*v[1:]) for k, v in o.CONTROLLED_KEYS.items()},  # data_prep/controlled.py
    }


def _other_command_rules(o: SimpleNamespace) -> dict[str, Rule]:
    """Rules of pretrain_toy_clip and from_reference (own defaults; their other keys share the train rules)."""
    return {
        "out_dir": STR_RULE,
        "model": STR_RULE,
        **{f"scenes.{k}": TABLE_KINDS[v[0]](*v[1:]) for k, v in o.SCENE_KEYS.items()},  # pretrain_toy_clip.yaml scenes:
        "reference_data.data_path": OPT_STR,
        "reference_data.out": OPT_STR,
        "reference_data.sources": _choices(tuple(o.REFERENCE_SOURCES), non_empty=True),
        "reference_data.spatial_dir": STR_RULE,
        "reference_data.attributes_dir": STR_RULE,
        "reference_data.smallbig_dir": STR_RULE,
        "reference_data.coco_dir": STR_RULE,
        "reference_data.negation_json": STR_RULE,
        "reference_data.negation_words": Rule(STR_LIST, non_empty=True),
        "reference_data.phrasings": _choices(o.PHRASINGS, non_empty=True),
        "reference_data.num_options": _int(2),
        "reference_data.val_fraction": _float(0.0, 1.0, high_open=True),
        "reference_data.samples_per_shard": _int(1),
        "reference_data.seed": SEED,
        "reference_data.prefix": STR_RULE,
        "reference_data.overwrite": BOOL_RULE,
    }


@lru_cache(maxsize=1)
def train_schema() -> dict[str, Rule]:
    """The key whose choices live in Lightning's modules, ``trainer.precision`` (checked by
    ``train.py`` after its other checks, since importing them takes ~7 s on 2 cores; the other
    commands start without Lightning)."""
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT  # every precision Lightning accepts

    precisions = tuple(dict.fromkeys(v for arg in get_args(_PRECISION_INPUT) for v in get_args(arg)))
    return {"trainer.precision": _choice(precisions)}
