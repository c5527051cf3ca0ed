"""Reading shards as a stream.

:func:`raw_sample_pipeline` (and :func:`dcsm.features.shards.feature_sample_pipeline`) return a
:class:`ShardPipeline` (a ``webdataset.DataPipeline``): shard list (brace patterns, lists,
``pipe:`` urls, or a folder with a manifest) -> deterministic shard shuffle per
``(seed, epoch)`` -> split by node (rank/world size, injectable) and by DataLoader worker ->
tar reading -> decoding -> buffer shuffle seeded by ``(seed, epoch, rank, worker)``.
A corrupt sample (unreadable image, invalid JSON, missing member, bad tensor file) or an
unreadable shard is skipped with a :class:`SkippedSampleWarning` naming shard and key, and
counted in the pipeline's :class:`SkipCounter` (shared with DataLoader worker processes).
Call :meth:`ShardPipeline.set_epoch` before each epoch (the epoch is shared with persistent
workers too).

Every shard gets the same shard order on all ranks, so the rank/worker split is a partition:
each key is read exactly once per epoch across all ranks and workers. With ``reader_samples``
(DDP training) every reader yields exactly that many samples whatever its shards hold: the
rest is dropped, a shortfall is filled by re-reading samples (:meth:`ShardPipeline._repeat`).
Each whole reader pass is counted in the pipeline's
:class:`~dcsm.data.shards.accounting.SampleAccount` (used, lost, dropped, repeated, duplicates).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import webdataset as wds
from webdataset import tariterators
from webdataset.gopen import gopen

from ..synthetic.vocab import CATEGORIES
from .format import SampleError, ShardError, decode_raw_sample
from .manifest import expand_urls, shard_subset
from .accounting import PassTally, SampleAccount, ShardTally
from .skips import SkipCounter, _SharedInt

log = logging.getLogger(__name__)


def _default_handler(exn: Exception) -> bool:
    return True


class StreamState:
    """Set by :func:`iter_shard` when a handler asked to stop the whole stream."""

    def __init__(self) -> None:
        self.stopped = False


def _tar_samples(url: str, skips: SkipCounter, handler: Callable[[Exception], bool], state: StreamState,
                 seen: set[str] | None = None) -> Iterator[dict]:
    """The grouped samples of one shard; a tar-level error is counted once (into ``seen``) and ends the shard."""
    last: dict[str, Any] = {"key": None, "seen": seen if seen is not None else set()}

    def on_error(exn: Exception) -> bool:
        first = str(exn.args[0]) if exn.args else str(exn)
        what = f"{type(exn).__name__}: {first.split(' @ ')[0]}"
        if what not in last["seen"]:  # tarfile re-raises the same error at two levels
            last["seen"].add(what)
            after = f" (after key {last['key']})" if last["key"] else ""
            skips.record(url, None, f"unreadable shard{after}: {what}")
            keep_going = bool(handler(exn))
            state.stopped = state.stopped or not keep_going
        return not state.stopped

    try:
        stream = gopen(url)
    except (OSError, ValueError) as exn:  # missing file, unknown url scheme, ...
        skips.record(url, None, f"cannot open shard: {type(exn).__name__}: {exn}")
        last["seen"].add("open")
        state.stopped = not handler(exn)
        return
    finished = False
    try:
        files = tariterators.tar_file_expander([{"url": url, "stream": stream}], handler=on_error)
        for sample in tariterators.group_by_keys(files, handler=on_error):
            last["key"] = sample["__key__"]
            yield sample
        finished = True
    finally:
        try:
            stream.close()  # a pipe: url reports a failed command here
        except OSError as exn:
            if finished:
                on_error(exn)


def iter_shard(
    url: str,
    decode: Callable[[dict], dict],
    skips: SkipCounter,
    handler: Callable[[Exception], bool] = _default_handler,
    state: StreamState | None = None,
    expected: int | None = None,
    tally: ShardTally | None = None,
    select: Callable[[int], bool] | None = None,
) -> Iterator[dict]:
    """Decoded samples of one shard in file order; corrupt ones are skipped and counted.

    ``handler(exn)`` is called after each skip (after counting and warning): return True to
    go on, False to stop (``state.stopped`` is set), or raise (e.g.
    ``webdataset.reraise_exception``) for strict mode. Once the shard is read to its end, the
    samples it lost go to ``skips.lost_samples``: ``expected`` (its manifest count) minus the
    samples it gave, or the corrupt samples skipped when ``expected`` is None. A key seen before
    in the shard (a sample appended twice) is skipped and counted as a duplicate, not given.
    ``tally`` (a :class:`ShardTally`) is kept up to date for the caller's accounting.
    ``select(i)``: whether the ``i``-th sample of the shard (by position, duplicates aside) is
    wanted; the others are not decoded and count as dropped (also those of a missing tail),
    and only wanted samples that are corrupt or missing count as lost.
    """
    state = state if state is not None else StreamState()
    tally = tally if tally is not None else ShardTally()
    keys: set[str] = set()
    tar_errors: set[str] = set()
    for sample in _tar_samples(url, skips, handler, state, tar_errors):
        key = sample.get("__key__")
        if key in keys:
            tally.duplicates += 1
            skips.record(url, key, "duplicate key: the shard holds this sample twice; the repeat is skipped")
            continue
        keys.add(key)
        position = tally.seen
        tally.seen += 1
        if select is not None and not select(position):
            tally.dropped += 1
            continue
        try:
            out = decode(sample)
        except SampleError as err:
            tally.corrupt += 1
            skips.record(url, key, str(err))
            if not handler(err):
                state.stopped = True
        else:
            tally.given += 1
            yield out
        if state.stopped:
            return
    given, corrupt, seen = tally.given, tally.corrupt, tally.seen
    if expected is not None and seen < expected and not tar_errors:  # a tar cut at a block boundary ends cleanly
        skips.record(url, None, f"shard ended after {seen} of the {expected} samples its manifest lists "
                                "(truncated or rewritten?)")
    missing = range(seen, expected) if expected is not None else range(0)
    unwanted = sum(1 for i in missing if not select(i)) if select is not None else 0
    tally.dropped += unwanted
    lost = corrupt if expected is None else max(expected - given - tally.dropped, 0)
    tally.lost, tally.done = lost, True
    if lost > 0:
        skips.add_lost(lost)


class _QuietSkips:
    """A skip sink for re-read (repeated) samples: their skips were counted on the first read."""

    def record(self, *args: Any) -> None:
        return None

    def add_lost(self, n: int) -> None:
        return None


def _buffer_shuffle(src: Iterable[dict], bufsize: int, rng: np.random.Generator) -> Iterator[dict]:
    if bufsize <= 1:
        yield from src
        return
    buf: list[dict] = []
    for sample in src:
        if len(buf) < bufsize:
            buf.append(sample)
            continue
        i = int(rng.integers(len(buf)))
        buf[i], sample = sample, buf[i]
        yield sample
    order = rng.permutation(len(buf))
    for i in order:
        yield buf[i]


def _dist_info() -> tuple[int, int] | None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return None


class ShardPipeline(wds.DataPipeline):
    """Iterable dataset over shards: split by node/worker, decode, skip+count, buffer shuffle.

    Attributes:
        urls: all shard urls (before splitting).
        skips: the :class:`SkipCounter` (shared with DataLoader workers).
        epoch: current epoch (shared with persistent DataLoader workers); see :meth:`set_epoch`.
    """

    def __init__(
        self,
        urls: str | Path | Sequence[str | Path],
        decode: Callable[[dict], dict],
        *,
        shuffle_buffer: int = 0,
        seed: int = 0,
        epoch: int = 0,
        shuffle_shards: bool | None = None,
        split_by_node: bool = True,
        split_by_worker: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        handler: Callable[[Exception], bool] | None = None,
        skips: SkipCounter | None = None,
        expected_counts: Mapping[str, int] | None = None,
        reader_samples: int | None = None,
        account: SampleAccount | None = None,
    ) -> None:
        super().__init__()
        if (rank is None) != (world_size is None):
            raise ShardError("give both rank and world_size, or neither (then torch.distributed / env decide)")
        if shuffle_buffer < 0:
            raise ShardError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.urls = expand_urls(urls)
        self.decode = decode
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self._epoch = _SharedInt(epoch)
        self.shuffle_shards = self.shuffle_buffer > 1 if shuffle_shards is None else bool(shuffle_shards)
        self.split_by_node = split_by_node
        self.split_by_worker = split_by_worker
        if rank is None and split_by_node:
            info = _dist_info()
            if info is not None:
                rank, world_size = info
        self.rank, self.world_size = rank, world_size
        self.handler = handler or _default_handler
        self.skips = skips if skips is not None else SkipCounter()
        self.expected_counts = dict(expected_counts or {})  # url -> manifest count (lost-sample accounting)
        if reader_samples is not None and reader_samples < 1:
            raise ShardError(f"reader_samples must be >= 1, got {reader_samples}")
        self.reader_samples = reader_samples  # every reader yields exactly this many (DDP equal share)
        self.account = account if account is not None else SampleAccount()
        self._tally: PassTally | None = None
        self.pipeline = [self._shards, self._samples, self._shuffle, self._commit]

    # -- epoch
    @property
    def epoch(self) -> int:
        return self._epoch.value

    def set_epoch(self, epoch: int) -> None:
        """Shard order and shuffle buffer depend on ``(seed, epoch)``; call before each epoch."""
        self._epoch.value = epoch

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if state["rank"] is None and self.split_by_node:  # resolve in the main process before spawning
            info = _dist_info()
            if info is not None:
                state["rank"], state["world_size"] = info
        return state

    # -- stages
    def node_info(self) -> tuple[int, int]:
        if not self.split_by_node:
            return 0, 1
        if self.rank is not None:
            return self.rank, self.world_size
        info = _dist_info()
        if info is not None:
            return info
        rank, world, _, _ = wds.utils.pytorch_worker_info()
        return rank, world

    def worker_info(self) -> tuple[int, int]:
        if not self.split_by_worker:
            return 0, 1
        winfo = torch.utils.data.get_worker_info()
        if winfo is not None:
            return winfo.id, winfo.num_workers
        _, _, worker, num_workers = wds.utils.pytorch_worker_info()
        return worker, num_workers

    def _shards(self) -> Iterator[str]:
        rank, world = self.node_info()
        worker, nworkers = self.worker_info()
        if len(self.urls) % (world * nworkers) and (world > 1 or nworkers > 1) and rank == 0 and worker == 0:
            log.info(
                "%d shards over %d rank(s) x %d worker(s): readers get unequal shard counts%s", len(self.urls), world,
                nworkers, " (evened out: see the dropped/repeated counts)" if self.reader_samples else "",
            )
        yield from shard_subset(
            self.urls, rank=rank, world_size=world, worker=worker, num_workers=nworkers,
            seed=self.seed, epoch=self.epoch, shuffle=self.shuffle_shards,
        )

    def _samples(self, urls: Iterable[str]) -> Iterator[dict]:
        """This reader's samples; with ``reader_samples``, exactly that many: the rest of its
        shards is dropped once it has them, and a reader that has too few repeats samples
        (its own shards again, or every shard when its own gave none) to fill its share."""
        urls = list(urls)
        cap = self.reader_samples
        counts = [self.expected_counts.get(u) for u in urls]
        tally = self._tally = PassTally(manifest=sum(c or 0 for c in counts))
        keep = self._keep(counts)
        state = StreamState()
        offset = 0
        for i, url in enumerate(urls):
            if cap is not None and tally.used >= cap and keep is None:
                tally.dropped += sum(c or 0 for c in counts[i:])
                break
            shard = ShardTally()
            expected = counts[i]
            select = None if keep is None else (lambda j, o=offset: o + j < len(keep) and bool(keep[o + j]))
            offset += expected or 0
            samples = iter_shard(url, self.decode, self.skips, self.handler, state, expected, shard, select)
            try:
                for sample in samples:
                    yield sample
                    if cap is not None and tally.used + shard.given >= cap:
                        break
            finally:
                samples.close()
                tally.add_shard(shard, expected)
            if state.stopped:
                return
        if cap is not None and tally.used < cap:
            yield from self._repeat(urls, cap - tally.used, tally)

    def _keep(self, counts: list[int | None]) -> np.ndarray | None:
        """Which of this reader's listed samples (by position) it yields when they are more than
        its ``reader_samples``: a random subset, new each epoch (so no sample is left out every
        epoch); None when all are wanted or the counts are unknown (then it stops at its share)."""
        cap, total = self.reader_samples, sum(c or 0 for c in counts)
        if cap is None or None in counts or total <= cap:
            return None
        rank, worker = self.node_info()[0], self.worker_info()[0]
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker, 2])
        keep = np.zeros(total, dtype=bool)
        keep[rng.choice(total, cap, replace=False)] = True
        return keep

    def _repeat(self, own: list[str], need: int, tally: PassTally) -> Iterator[dict]:
        """``need`` more samples re-read from ``own`` shards, else from all shards of the epoch
        (from this reader's place on); counted in ``tally.repeated``, not skipped twice."""
        rank, world = self.node_info()
        worker, nworkers = self.worker_info()
        everything = shard_subset(self.urls, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle_shards)
        start = (rank * nworkers + worker) % max(len(everything), 1)
        for source in (own, everything[start:] + everything[:start]):
            while need > 0:
                got = 0
                for url in source:
                    for sample in iter_shard(url, self.decode, _QuietSkips()):
                        yield sample
                        got += 1
                        tally.repeated += 1
                        need -= 1
                        if need == 0:
                            return
                if got == 0:
                    break  # nothing readable here: next source
        if need > 0:
            raise ShardError(
                f"no readable sample in any of the {len(self.urls)} shard(s) (e.g. {self.urls[0]}) to fill "
                f"rank {rank} worker {worker}'s {self.reader_samples} samples. Fix: check the shards (see the "
                "skipped-sample warnings) or re-write them."
            )

    def _commit(self, src: Iterable[dict]) -> Iterator[dict]:
        """Pass samples on; add this reader's pass to :attr:`account` once it is whole."""
        yield from src
        if self._tally is not None:
            self.account.commit(self._tally)
            self._tally = None

    def _shuffle(self, src: Iterable[dict]) -> Iterator[dict]:
        rank, worker = self.node_info()[0], self.worker_info()[0]
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker, 1])
        return _buffer_shuffle(src, self.shuffle_buffer, rng)


def raw_sample_pipeline(
    urls: str | Path | Sequence[str | Path],
    transform: Callable | None,
    *,
    with_opposite: bool = False,
    categories: Sequence[str] | None = CATEGORIES,
    keep_meta: bool = False,
    **stream: Any,
) -> ShardPipeline:
    """Raw MCQ samples ``{"images", "captions", "label", "category", "key"}`` from raw shards.

    Args:
        urls: brace pattern / list / ``pipe:`` url / folder with a manifest.
        transform: PIL image -> tensor (e.g. ``FrozenCLIP.preprocess``); None keeps PIL.
        with_opposite: also yield ``opposite_images``/``opposite_label`` (samples without them
            are skipped and counted).
        categories: names for the ``category`` index (None: no ``category`` key).
        keep_meta: also yield the JSON ``meta`` dict.
        stream: :class:`ShardPipeline` options —
            ``shuffle_buffer`` (0/1 = file order), ``seed``/``epoch`` (shard order and buffer
            shuffle are deterministic in them), ``shuffle_shards`` (default: when
            ``shuffle_buffer > 1``), ``split_by_node``/``split_by_worker``, ``rank``/``world_size``
            (default: torch.distributed, then env RANK/WORLD_SIZE), ``handler`` (called with the
            exception after each counted skip: True go on, False stop, raise fail), ``skips``
            (a :class:`SkipCounter` to count into), ``expected_counts`` (url -> samples its
            manifest lists: a shard that gives fewer adds the difference to
            ``skips.lost_samples``).
    """
    decode = functools.partial(
        decode_raw_sample, transform=transform, with_opposite=with_opposite, categories=categories, keep_meta=keep_meta,
    )
    return ShardPipeline(urls, decode, **stream)
