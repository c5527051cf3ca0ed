"""Progress bars on the long loops (encoding scenes and shards, benchmark scoring, diagnostics).

On by default, also when stderr is not a terminal (a log file shows how far a run got); the
config's top-level ``progress`` key (one home, ``configs/default.yaml``; Lightning's
``trainer.enable_progress_bar`` follows it) switches them all off.
"""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
#: The config key (top level) that switches progress bars on or off.
PROGRESS_KEY = "progress"


def progress_enabled(cfg: dict | None, default: bool = True) -> bool:
    """The config's ``progress`` setting (``default`` when the config has none)."""
    if not isinstance(cfg, dict) or cfg.get(PROGRESS_KEY) is None:
        return default
    return bool(cfg[PROGRESS_KEY])


def progress_bar(iterable: Iterable[T], enabled: bool = True, *, desc: str, total: int | None = None,
                 unit: str = "it") -> Iterable[T]:
    """``iterable`` wrapped in a tqdm bar on stderr when ``enabled``, else as it is."""
    if not enabled:
        return iterable
    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True)
