"""Where every sample a manifest lists went in an epoch: used, lost, dropped (and repeated).

A reader (one rank x DataLoader worker) reads its shards of the epoch and tallies each one
(:class:`ShardTally`); when its pass ends, the pass is added to a :class:`SampleAccount`
shared with the DataLoader workers:

* ``manifest``   the samples the manifest lists for the shards this reader was given;
* ``used``       distinct samples it yielded (trained on / validated);
* ``lost``       samples of shards read to their end that were corrupt, failed their checksum,
                 or were missing (a truncated or unreadable shard: manifest count minus given);
* ``dropped``    samples a reader over its equal share (DDP) did not use: a random subset of
                 its samples, new each epoch, skipped undecoded (with unknown counts: the
                 unread rest of its shards);
* ``repeated``   extra samples yielded (re-read) to fill the equal share of a reader that had
                 too few; not in ``used``;
* ``duplicates`` samples skipped because their key already appeared in the same shard;
                 not in the manifest count.

Per pass ``used + lost + dropped == manifest`` (for shards with a manifest count). Only whole
passes are added: an epoch cut short (``max_steps``, a kill) is not counted.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import multiprocessing.context as mp_context
from dataclasses import dataclass, fields

FIELDS = ("manifest", "used", "lost", "dropped", "repeated", "duplicates", "passes")


@dataclass
class ShardTally:
    """One shard's pass: what it gave and lost; ``done`` once read to its end."""

    seen: int = 0  # samples read (by position; duplicates aside)
    given: int = 0
    corrupt: int = 0
    duplicates: int = 0
    dropped: int = 0  # not wanted (a reader over its share): not decoded, or in a missing tail
    lost: int = 0  # set when done: wanted samples corrupt or missing (corrupt when no count is known)
    done: bool = False


@dataclass
class PassTally:
    """One reader's pass over its shards of an epoch (the :data:`FIELDS` counts)."""

    manifest: int = 0
    used: int = 0
    lost: int = 0
    dropped: int = 0
    repeated: int = 0
    duplicates: int = 0
    passes: int = 1

    def add_shard(self, shard: ShardTally, expected: int | None) -> None:
        """Add a shard read to its end (``lost``) or stopped early (unread rest ``dropped``)."""
        self.used += shard.given
        self.duplicates += shard.duplicates
        self.dropped += shard.dropped
        if shard.done:
            self.lost += shard.lost
        else:
            self.lost += shard.corrupt
            if expected is not None:
                self.dropped += max(expected - shard.seen, 0)

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


class SampleAccount:
    """Sums of :class:`PassTally` over passes, shared with DataLoader worker processes (shared
    through fork, or through pickling while a worker is spawned; any other pickling gives a
    snapshot, e.g. a DDP rank spawned later starts from its own copy)."""

    def __init__(self) -> None:
        self._values = mp.get_context("spawn").Array(ctypes.c_longlong, len(FIELDS))

    def __getstate__(self) -> dict:
        if mp_context.get_spawning_popen() is not None:
            return {"shared": self._values}
        return {"snapshot": list(self._values[:])}

    def __setstate__(self, state: dict) -> None:
        if "shared" in state:
            self._values = state["shared"]
            return
        self.__init__()
        self._values[:] = state["snapshot"]

    def __deepcopy__(self, memo: dict) -> "SampleAccount":
        return self

    def commit(self, tally: PassTally) -> None:
        """Add one whole reader pass."""
        d = tally.as_dict()
        with self._values.get_lock():
            for i, name in enumerate(FIELDS):
                self._values[i] += d[name]

    def reset(self) -> None:
        with self._values.get_lock():
            self._values[:] = [0] * len(FIELDS)

    def snapshot(self) -> dict[str, int]:
        with self._values.get_lock():
            return dict(zip(FIELDS, (int(v) for v in self._values[:])))

    def __repr__(self) -> str:
        return f"SampleAccount({self.snapshot()})"


def summarize(counts: dict[str, int], readers: int) -> dict[str, float | int]:
    """A report entry: the counts, ``epochs`` (whole passes / readers) and the fractions of the
    manifest samples that were lost, dropped and repeated."""
    counts = {k: int(v) for k, v in counts.items()}
    total = max(counts.get("manifest", 0), 1)
    out: dict[str, float | int] = {**counts, "epochs": counts.get("passes", 0) / max(readers, 1)}
    for k in ("lost", "dropped", "repeated"):
        out[f"{k}_fraction"] = round(counts.get(k, 0) / total, 6)
    return out
