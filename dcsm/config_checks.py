"""Early config checks: every command validates its config right after loading it, before any
model, encoder or data is built, so a bad value fails in a second with one line naming the key.

* :func:`normalize_lists`: a single string where ``configs/default.yaml`` has a list
  (``eval.annotation_files=path``, ``eval.splits=test``) becomes a one-element list, instead of
  being iterated character by character later.
* :func:`check_values`: every key of the one table :func:`dcsm.config_schema.schema` holds
  the type, choice or range it allows (``optim.lr=abc``, ``trainer.accelerator=tpu``,
  ``trainer.devices=0``, ``checkpoint.mode=foo``, ``eval.splits=[nope]`` ...).
* :func:`check_monitor`: ``checkpoint.monitor`` names a metric the run logs.
* :func:`check_writable`: ``run_dir`` / ``eval.output`` can be written (not a file where a
  folder goes or the other way round, path not too long, parent writable).
* :func:`check_wandb_login`: ``logger.mode=online`` has an API key (``WANDB_API_KEY`` or
  ``~/.netrc``, as wandb reads them).
* :func:`check_shard_paths`: local shard folders/files named by a config key exist (a missing
  folder says "does not exist", not "no manifest.json").
"""

from __future__ import annotations

import errno
import math
import netrc
import os
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

from .config import DEFAULT_CONFIG, ConfigError, load_yaml, to_plain
from .config_schema import (BOOL, CHOICE, CHOICE_LIST, DEVICE, DEVICES, FLOAT, FLOAT_LIST, INT, INT_LIST, NAME_OR_FILE,
                            NAME_OR_LIST, STR, STR_LIST, STR_OR_LIST, Rule, schema, train_schema)

#: Keys naming shards to read, checked when the command reads them.
TRAIN_SHARD_KEYS = ("data.train_shards", "data.val_shards")
REMOTE_PREFIXES = ("pipe:", "http://", "https://", "gs://", "s3://")


def lookup(cfg: dict, key: str) -> tuple[bool, Any]:
    """(found, value) of a dotted key in a nested dict."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _set(cfg: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[last] = value


def _leaves(d: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@lru_cache(maxsize=1)
def list_keys() -> tuple[str, ...]:
    """Dotted keys whose value in ``configs/default.yaml`` is a list (the one home of what a list is)."""
    return tuple(k for k, v in _leaves(to_plain(load_yaml(DEFAULT_CONFIG))) if isinstance(v, list))


def normalize_lists(cfg: dict) -> dict:
    """A single string under a list key -> a one-element list (in place; returns ``cfg``)."""
    for key in list_keys():
        found, value = lookup(cfg, key)
        if found and isinstance(value, str):
            _set(cfg, key, [value])
    return cfg


def check_values(cfg: dict, rules: dict[str, Rule] | None = None) -> None:
    """Every key of ``rules`` (default: :func:`dcsm.config_schema.schema`) present in ``cfg``
    holds what its rule allows.

    Raises:
        ConfigError: naming the key, the value and the accepted values.
    """
    for key, rule in (schema() if rules is None else rules).items():
        found, value = lookup(cfg, key)
        if not found or not violation(rule, value):
            continue
        fix = f"Fix: {key}={rule.describe()}."
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if rule.kind in (INT, FLOAT) and rule.bounds() and number and math.isfinite(value) and (
                rule.kind == FLOAT or isinstance(value, int)):
            raise ConfigError(f"{key}={value} must be {rule.bounds()}. {fix}")
        if rule.kind == INT:
            raise ConfigError(f"{key}={value!r} must be a whole number {rule.bounds()}. {fix}".replace("  ", " "))
        raise ConfigError(f"{key}={value!r} is not allowed. {fix}")


def monitor_names(cfg: dict) -> list[str]:
    """The metrics a training run logs (:class:`dcsm.train.module.DCSMModule`), which ``checkpoint.monitor`` may name."""
    from .train.choices import SHARD_SOURCES

    data = cfg.get("data", {})
    vals = ["val"] if data.get("source") in SHARD_SOURCES else list(data.get("val_splits") or [])
    cats = list(data.get("categories") or [])
    metrics = ["loss", "acc", "clip_acc", *(f"{m}_{c}" for m in ("acc", "clip_acc") for c in cats)]
    return ["train/loss", "train/acc", *(f"{v}/{m}" for v in vals for m in metrics)]


def check_monitor(cfg: dict) -> None:
    """``checkpoint.monitor`` (when set) is a metric the run logs; otherwise the run would only
    fail after training.

    Raises:
        ConfigError: naming the key and the metrics there are.
    """
    monitor = lookup(cfg, "checkpoint.monitor")[1]
    names = monitor_names(cfg)
    if monitor is not None and monitor not in names:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise ConfigError(f"checkpoint.monitor={monitor} is not a metric this run logs ({shown}). "
                          f"Fix: checkpoint.monitor=<one of those>, or null to keep the newest checkpoint.")


def _name_max(folder: Path) -> tuple[int, int]:
    try:
        return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def check_writable(key: str, value: str | os.PathLike, kind: str = "folder") -> None:
    """``value`` (a ``kind`` = "folder" or "file" path set by ``key``) can be created and written:
    no part of it is a file where a folder is needed, a file is not a folder, no name is too long,
    and the nearest existing folder accepts a new file (tried, then removed). Nothing is created.

    Raises:
        ConfigError: naming the key, the path and why.
    """
    path = Path(os.path.abspath(os.fspath(value)))
    fix = f"Fix: {key}=<a writable {kind} path>."
    name_max, path_max = _name_max(Path("/"))
    if len(os.fsencode(str(path))) >= path_max or any(len(os.fsencode(p)) > name_max for p in path.parts):
        raise ConfigError(f"{key}='{value}': path too long (at most {name_max} bytes a name, {path_max} in all). {fix}")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise ConfigError(f"{key}='{value}' is a file, not a folder. {fix}")
    if kind == "file" and path.is_dir():
        raise ConfigError(f"{key}='{value}' is a folder; it must name the file to write (e.g. {path / 'eval.json'}). {fix}")
    parent = path if kind == "folder" else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}='{value}': '{parent}' is a file, so no folder can be made under it. {fix}")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=".dcsm-write-check-"):
            pass
    except OSError as err:
        why = "no space left" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise ConfigError(f"{key}='{value}': cannot write in '{parent}' ({why}). {fix}") from None


WANDB_HOST = "api.wandb.ai"


def wandb_key_found(host: str = WANDB_HOST) -> bool:
    """True when wandb will find an API key: ``WANDB_API_KEY`` or a ``netrc`` entry for its host
    (``NETRC`` or ``~/.netrc``, where ``wandb login`` writes it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    base = os.environ.get("WANDB_BASE_URL", f"https://{host}")
    host = base.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    for path in (os.environ.get("NETRC"), os.path.expanduser("~/.netrc"), os.path.expanduser("~/_netrc")):
        if path and os.path.isfile(path):
            try:
                entry = netrc.netrc(path).authenticators(host)
            except (netrc.NetrcParseError, OSError):
                continue
            if entry and entry[2]:
                return True
    return False


def check_wandb_login(cfg: dict) -> None:
    """``logger.kind=wandb logger.mode=online`` needs an API key before anything runs.

    Raises:
        ConfigError: how to log in, or to log offline.
    """
    lg = cfg.get("logger") or {}
    if lg.get("kind") == "wandb" and lg.get("mode") == "online" and not wandb_key_found():
        raise ConfigError("logger.mode=online needs a W&B API key, and none was found (WANDB_API_KEY, ~/.netrc). "
                          "Fix: run 'wandb login' or set WANDB_API_KEY, or use logger.mode=offline (sync later with "
                          "'wandb sync').")


def _local_paths(urls: Any) -> list[str]:
    """The local paths a shard spec names (brace patterns expanded; remote urls left out)."""
    import webdataset as wds  # only when shards are named

    specs = [urls] if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for spec in specs:
        spec = str(spec)
        if spec.startswith(REMOTE_PREFIXES):
            continue
        out.extend(u for u in wds.shardlists.expand_urls(spec) if not u.startswith(REMOTE_PREFIXES))
    return out


def check_shard_paths(cfg: dict, keys: Sequence[str]) -> None:
    """Every local shard folder/file named under ``keys`` exists.

    Raises:
        ConfigError: ``KEY: 'PATH' does not exist`` with the fix.
    """
    for key in keys:
        found, value = lookup(cfg, key)
        if not found or value in (None, "", []):
            continue
        for path in _local_paths(value):
            if not os.path.exists(path):
                raise ConfigError(
                    f"{key}: '{path}' does not exist. Fix: {key}=<a shard folder with manifest.json, a brace pattern "
                    "'DIR/shard-{000000..000009}.tar' or a list of existing shard files>."
                )


def check_validation_data(cfg: dict, val_key: str) -> None:
    """A run that picks its best checkpoint by ``checkpoint.monitor`` needs validation data
    under ``val_key``; without it the run could only end without a best checkpoint.

    Raises:
        ConfigError: naming both keys and the two fixes.
    """
    monitor = lookup(cfg, "checkpoint.monitor")[1]
    found, value = lookup(cfg, val_key)
    if monitor is not None and found and value in (None, "", []):
        raise ConfigError(
            f"checkpoint.monitor={monitor} needs validation data, but {val_key} is empty. "
            f"Fix: set {val_key}, or checkpoint.monitor=null to keep the newest checkpoint."
        )


def check_config(cfg: dict) -> dict:
    """What every command runs right after loading its config: :func:`normalize_lists`, then
    :func:`check_values` with :func:`dcsm.config_schema.schema`, and with
    :func:`dcsm.config_schema.train_schema` too once Lightning is imported (``train.py``,
    ``pretrain_toy_clip.py``: their ``trainer.precision`` choices cost nothing to
    load then; the other commands start without Lightning). Returns ``cfg`` (normalized in place)."""
    normalize_lists(cfg)
    check_values(cfg)
    if "lightning" in sys.modules:
        check_values(cfg, train_schema())
    return cfg


def _is(value: Any, choice: Any) -> bool:
    """``value`` is ``choice`` with its type (``1`` is not ``True``, ``"1"`` is not ``1``)."""
    return value == choice and type(value) is type(choice)


def _in_bounds(rule: Rule, value: Any, kind: str) -> bool:
    """``value`` is a finite number of ``kind`` (int/float) within the rule's bounds (or one of ``also``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == INT and not isinstance(value, int)):
        return False
    if any(_is(value, a) for a in rule.also):
        return True
    if not math.isfinite(value):
        return False
    if rule.low is not None and (value < rule.low or (rule.low_open and value == rule.low)):
        return False
    return rule.high is None or not (value > rule.high or (rule.high_open and value == rule.high))


def _texts(value: Any) -> bool:
    """A non-empty list of non-empty texts."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)


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
        return (not isinstance(value, list) or (rule.non_empty and not value)
                or not all(isinstance(v, str) and v for v in value))
    if kind == CHOICE:
        return isinstance(value, (list, dict)) or not any(_is(value, c) for c in rule.choices)
    if kind == CHOICE_LIST:
        return (not isinstance(value, list) or (rule.non_empty and not value)
                or not all(any(_is(v, c) for c in rule.choices) for v in value))
    if kind in (INT_LIST, FLOAT_LIST):
        item = INT if kind == INT_LIST else FLOAT
        return (not isinstance(value, list) or (rule.non_empty and not value)
                or (rule.length is not None and len(value) != rule.length)
                or not all(_in_bounds(rule, v, item) for v in value))
    if kind == STR_OR_LIST:
        return not (isinstance(value, str) and value.strip()) and not _texts(value)
    if kind == NAME_OR_LIST:
        return not any(_is(value, c) for c in rule.choices) and not _texts(value)
    if kind == NAME_OR_FILE:
        return not any(_is(value, c) for c in rule.choices) and not (isinstance(value, str) and os.path.isfile(value))
    if kind == DEVICE:
        if not isinstance(value, str):
            return True
        name, _, index = value.partition(":")
        return value not in rule.choices and not (name == "cuda" and index.isdigit())
    if kind == DEVICES:
        if isinstance(value, bool):
            return True
        if isinstance(value, int):
            return not (value >= 1 or value == -1)
        if isinstance(value, str):
            return value != "auto" and not all(p.strip().isdigit() for p in value.split(",")) or value.strip(", ") == ""
        return not (isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))
    if kind in (INT, FLOAT):
        return not _in_bounds(rule, value, kind)
    raise AssertionError(f"unknown rule kind {kind}")
