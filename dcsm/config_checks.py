"""Early config checks: every command validates its config right after loading it, before any
model, encoder or data is built, so a bad value fails in a second with one line naming the key.

* :func:`normalize_lists`: a single string where ``configs/default.yaml`` has a list
  (``eval.annotation_files=path``, ``eval.splits=test``) becomes a one-element list, instead of
  being iterated character by character later.
* :func:`check_values`: the numeric keys of :data:`MIN_VALUES` are integers (not bools, not
  text) at or above their minimum.
* :func:`check_shard_paths`: local shard folders/files named by a config key exist (a missing
  folder says "does not exist", not "no manifest.json").
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Iterator, Sequence

from .config import DEFAULT_CONFIG, ConfigError, load_yaml, to_plain

#: Integer keys and the least value that makes sense (checked wherever the key is set).
MIN_VALUES: dict[str, int] = {
    "data.batch_size": 1,
    "data.encode_batch_size": 1,
    "data.num_workers": 0,
    "data.num_options": 2,
    "data.shuffle_buffer": 0,
    "data.train_size": 1,
    "data.val_size": 0,
    "data.test_size": 0,
    "data.shifted_size": 0,
    "data.heldout_size": 0,
    "data.image_size": 1,
    "encoder.max_tokens": 1,
    "scorer.channels": 1,
    "scorer.hidden": 1,
    "trainer.max_epochs": 1,
    "trainer.accumulate_grad_batches": 1,
    "trainer.log_every_n_steps": 1,
    "trainer.check_val_every_n_epoch": 1,
    "eval.batch_size": 1,
    "eval.num_workers": 0,
    "eval.max_failures": 0,
    "diagnostics.batch_size": 1,
    "synthetic_shards.samples_per_shard": 1,
    "pair_shards.samples_per_shard": 1,
    "cache_features.batch_size": 1,
}
#: Keys that may be null (then the default behaviour applies) but, when set, must be >= the value.
OPTIONAL_MIN_VALUES: dict[str, int] = {
    "data.samples_per_epoch": 1,
    "checkpoint.every_n_train_steps": 1,
    "synthetic_shards.num_samples": 1,
}
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


def _check_int(key: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value!r} must be a whole number >= {least}. Fix: {key}=<integer >= {least}>.")
    if value < least:
        raise ConfigError(f"{key}={value} must be >= {least}. Fix: {key}=<integer >= {least}>.")


def check_values(cfg: dict) -> None:
    """Integer keys of :data:`MIN_VALUES` (and set keys of :data:`OPTIONAL_MIN_VALUES`) in range.

    Raises:
        ConfigError: naming the key, the value and the fix.
    """
    for key, least in MIN_VALUES.items():
        found, value = lookup(cfg, key)
        if found:
            _check_int(key, value, least)
    for key, least in OPTIONAL_MIN_VALUES.items():
        found, value = lookup(cfg, key)
        if found and value is not None:
            _check_int(key, value, least)


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
    :func:`check_values`. Returns ``cfg`` (normalized in place)."""
    normalize_lists(cfg)
    check_values(cfg)
    return cfg
