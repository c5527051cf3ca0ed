"""The feature cache's one home: :class:`FeatureBatch` (keys, shapes, cache dtype), live
encoding, the in-memory cache, the on-disk feature shards and their writer.

==================  =====================================================
module              holds
==================  =====================================================
``batch``           :class:`FeatureBatch`, ``FEATURE_KEYS``, ``CACHE_DTYPE``, ``collate_mcq``
``encode``          raw batch -> :class:`FeatureBatch` with the frozen encoder
``memory``          in-memory cache of a dataset (``cache_dataset``, ``FeatureDataset``)
``shards``          feature-shard format, reading, manifest, encoder-compatibility check
``writer``          ``cache_shards``: raw shards -> feature shards (resumable)
==================  =====================================================
"""

from importlib import import_module
from typing import Any

# Re-exports resolved on first use (PEP 562): importing one submodule (``features.map_cache`` for
# its CACHE_KINDS in the config check) must not import the encoder and open_clip (seconds).
_HOMES = {"CACHE_DTYPE": "..model.batch", "FEATURE_KEYS": "..model.batch", "FeatureBatch": "..model.batch",
          "collate_mcq": "..model.batch", "encode_batch": "..model.encode", "ensure_features": "..model.encode"}

__all__ = ["CACHE_DTYPE", "FEATURE_KEYS", "FeatureBatch", "collate_mcq", "encode_batch", "ensure_features"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name], __name__), name)
