"""dcsm: Dense Cosine Similarity Map scorers on top of frozen CLIP encoders.

``dcsm.load(checkpoint)`` returns a :class:`dcsm.api.Scorer` (``.score``, ``.score_options``,
``.maps``, ``.heatmaps``); it is imported on first use, so ``import dcsm`` stays light and
the scoring path never imports Lightning.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load", "Scorer"]

_LAZY = {"load": "load", "Scorer": "Scorer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import api

        return getattr(api, _LAZY[name])
    raise AttributeError(f"module 'dcsm' has no attribute {name!r}")
