"""Shard lists: a folder's manifest, brace patterns and urls, and each reader's subset."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import webdataset as wds

from .format import MANIFEST_NAME, ShardError


def read_manifest(path: str | Path) -> dict:
    """The manifest of a shard folder (or the manifest file itself)."""
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() else path
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise ShardError(f"no {MANIFEST_NAME} in {path}. Fix: give shard urls, or write the shards first.") from None
    except json.JSONDecodeError as err:
        raise ShardError(f"{file}: invalid JSON ({err})") from None


def shard_urls(path: str | Path) -> list[str]:
    """Paths of the shards a folder's manifest lists."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return [str(folder / e["name"]) for e in read_manifest(path)["shards"]]


def expand_urls(urls: str | Path | Sequence[str | Path]) -> list[str]:
    """Shard urls from a brace pattern (``shard-{000000..000009}.tar``; ``::`` joins several),
    a list, ``pipe:``/``http`` urls, or a folder holding a ``manifest.json``."""
    if isinstance(urls, Path):
        urls = str(urls)
    if isinstance(urls, str):
        if os.path.isdir(urls):
            return shard_urls(urls)
        out = wds.shardlists.expand_urls(urls)
    else:
        out = []
        for u in urls:
            out.extend(expand_urls(u))
    if not out:
        raise ShardError(f"no shard urls in {urls!r}")
    return out


def shard_subset(
    urls: Sequence[str],
    *,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    num_workers: int = 1,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = False,
) -> list[str]:
    """The shards one (rank, worker) reads: the (optionally shuffled per ``(seed, epoch)``)
    list, every ``world_size``-th from ``rank``, then every ``num_workers``-th from
    ``worker``. Identical inputs on all ranks make the subsets a partition."""
    if not 0 <= rank < world_size or not 0 <= worker < num_workers:
        raise ShardError(f"bad split: rank {rank} of {world_size}, worker {worker} of {num_workers}")
    urls = list(urls)
    if shuffle:
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(len(urls))
        urls = [urls[i] for i in order]
    return urls[rank::world_size][worker::num_workers]
