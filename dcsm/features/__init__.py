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

from ..model.batch import CACHE_DTYPE, FEATURE_KEYS, FeatureBatch, collate_mcq
from ..model.encode import encode_batch, ensure_features

__all__ = ["CACHE_DTYPE", "FEATURE_KEYS", "FeatureBatch", "collate_mcq", "encode_batch", "ensure_features"]
