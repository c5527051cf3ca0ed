"""Skipped-sample accounting shared with DataLoader worker processes."""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import multiprocessing.context as mp_context
import warnings
from dataclasses import dataclass


class SkippedSampleWarning(UserWarning):
    """A corrupt sample or shard was skipped while reading."""



@dataclass(frozen=True)
class SkipRecord:
    shard: str
    key: str | None
    reason: str

    def __str__(self) -> str:
        return f"shard {self.shard}, key {self.key if self.key is not None else '?'}: {self.reason}"


class _Shared:
    """Process-shared values (count, epoch, example log) for DataLoader workers.

    Shared through fork, or through pickling while a worker process is being spawned; any
    other pickling (or deepcopy) gives a snapshot / the same object.
    """

    def __init__(self, example_bytes: int) -> None:
        # a spawn-context lock can be inherited by fork workers and pickled to spawn/forkserver
        # workers; a fork-context one cannot be sent to spawned workers
        ctx = mp.get_context("spawn")
        self.value = ctx.Value(ctypes.c_longlong, 0)
        self.buf = ctx.Array(ctypes.c_char, max(example_bytes, 1), lock=False)
        self.used = ctx.Value(ctypes.c_longlong, 0, lock=False)
        self.example_bytes = example_bytes

    def __getstate__(self) -> dict:
        if mp_context.get_spawning_popen() is not None:
            return {"shared": (self.value, self.buf, self.used), "example_bytes": self.example_bytes}
        return {"snapshot": (self.value.value, bytes(self.buf[: self.used.value])), "example_bytes": self.example_bytes}

    def __setstate__(self, state: dict) -> None:
        self.example_bytes = state["example_bytes"]
        if "shared" in state:
            self.value, self.buf, self.used = state["shared"]
            return
        self.__init__(self.example_bytes)
        value, data = state["snapshot"]
        self.value.value = value
        self.buf[: len(data)] = data
        self.used.value = len(data)

    def __deepcopy__(self, memo: dict) -> "_Shared":
        return self


class SkipCounter:
    """Counts skipped samples/shards; readable after iteration, also across DataLoader workers.

    Attributes:
        count: number of skips so far (all processes): one per corrupt sample, and one per
            unreadable shard or shard tail however many samples it held.
        lost_samples: samples lost (all processes): per shard read to its end, its manifest
            count minus the samples it gave (a tar cut in half loses all its later samples,
            one skip); the corrupt-sample skips where no count is known.
        examples: the first ``max_examples`` :class:`SkipRecord` (all processes).

    Each skip also emits a :class:`SkippedSampleWarning` naming shard and key (the first
    ``max_warnings`` per process; then one note that further ones are only counted).
    """

    def __init__(self, max_examples: int = 50, max_warnings: int = 20) -> None:
        self.max_examples = max_examples
        self.max_warnings = max_warnings
        self._shared = _Shared(example_bytes=max(max_examples, 0) * 512)
        self._lost = _Shared(example_bytes=0)
        self._warned = 0

    @property
    def lost_samples(self) -> int:
        return int(self._lost.value.value)

    def add_lost(self, n: int) -> None:
        """Count ``n`` more lost samples (see :attr:`lost_samples`)."""
        with self._lost.value.get_lock():
            self._lost.value.value += int(n)

    @property
    def count(self) -> int:
        return int(self._shared.value.value)

    @property
    def examples(self) -> list[SkipRecord]:
        sh = self._shared
        with sh.value.get_lock():
            data = bytes(sh.buf[: sh.used.value])
        return [SkipRecord(**json.loads(line)) for line in data.decode("utf-8").splitlines() if line]

    def reset(self) -> None:
        sh = self._shared
        with sh.value.get_lock():
            sh.value.value = 0
            sh.used.value = 0
        with self._lost.value.get_lock():
            self._lost.value.value = 0

    def record(self, shard: str, key: str | None, reason: str) -> SkipRecord:
        rec = SkipRecord(str(shard), key, reason)
        sh = self._shared
        with sh.value.get_lock():
            sh.value.value += 1
            n_examples = bytes(sh.buf[: sh.used.value]).count(b"\n")
            if n_examples < self.max_examples:
                line = (json.dumps(rec.__dict__) + "\n").encode("utf-8")
                if len(line) > 512:
                    line = (json.dumps({**rec.__dict__, "reason": rec.reason[:300]}) + "\n").encode("utf-8")
                start = sh.used.value
                if start + len(line) <= len(sh.buf):
                    sh.buf[start: start + len(line)] = line
                    sh.used.value = start + len(line)
        if self._warned < self.max_warnings:
            warnings.warn(f"skipped corrupt sample: {rec}", SkippedSampleWarning, stacklevel=2)
        elif self._warned == self.max_warnings:
            warnings.warn(
                f"more than {self.max_warnings} skipped samples in this process; further ones are "
                "only counted (SkipCounter.count / .examples)", SkippedSampleWarning, stacklevel=2,
            )
        self._warned += 1
        return rec

    def __repr__(self) -> str:
        return f"SkipCounter(count={self.count}, lost_samples={self.lost_samples})"


class _SharedInt:
    """An int shared with DataLoader workers (same pickling rules as :class:`SkipCounter`)."""

    def __init__(self, value: int = 0) -> None:
        self._shared = _Shared(example_bytes=0)
        self._shared.value.value = int(value)

    @property
    def value(self) -> int:
        return int(self._shared.value.value)

    @value.setter
    def value(self, v: int) -> None:
        self._shared.value.value = int(v)
