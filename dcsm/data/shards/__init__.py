"""Raw WebDataset shards of multiple-choice samples, split by job.

==============  ==========================================================
module          holds
==============  ==========================================================
``format``      sample layout (members, JSON record), errors, sample encode/decode
``manifest``    ``manifest.json`` reading, shard urls / brace patterns, per-reader subsets
``skips``       :class:`SkipCounter` (skipped samples, shared with DataLoader workers)
``write``       deterministic tars and resumable :func:`write_shards`
``read``        :class:`ShardPipeline` and :func:`raw_sample_pipeline` (split, decode, shuffle)
==============  ==========================================================

Feature shards (cached encoder outputs) live in :mod:`dcsm.features.shards`.
"""

from .format import IMAGE_EXTS, MANIFEST_NAME, RAW_FORMAT, SampleError, ShardError, decode_raw_sample, encode_image, shard_name
from .manifest import expand_urls, read_manifest, shard_subset, shard_urls
from .read import ShardPipeline, StreamState, iter_shard, raw_sample_pipeline
from .skips import SkipCounter, SkippedSampleWarning, SkipRecord
from .write import count_tar_samples, write_shards, write_tar

__all__ = [
    "IMAGE_EXTS", "MANIFEST_NAME", "RAW_FORMAT", "SampleError", "ShardError", "decode_raw_sample", "encode_image",
    "shard_name", "expand_urls", "read_manifest", "shard_subset", "shard_urls", "ShardPipeline", "StreamState",
    "iter_shard", "raw_sample_pipeline", "SkipCounter", "SkippedSampleWarning", "SkipRecord", "count_tar_samples",
    "write_shards", "write_tar",
]
