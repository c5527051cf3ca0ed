"""Run the frozen encoder once over raw shards and write feature shards (fp16 or int8) or map
shards (``cache_features.kind=maps``: the head's maps + pooled cosines, :mod:`dcsm.features.map_cache`).

    python data_prep/cache_features.py [--config FILE] 'cache_features.shards=DIR/shard-{000000..000003}.tar' \
        cache_features.out=FEATDIR encoder.model=ViT-B-32 encoder.pretrained=null encoder.max_tokens=20

The encoder is the config's ``encoder:`` section (the same one ``train.py`` reads, so a run
trains on features of the encoder it is configured with); the rest is the ``cache_features:``
section. Resumable; see :mod:`dcsm.features.writer`.
"""

from __future__ import annotations

from typing import Sequence

from ..config_checks import check_shard_paths, check_writable
from ..progress import progress_enabled
from ..model.encoders import EncoderSpec, FrozenCLIP
from ..features.map_cache import check_cacheable_maps
from ..features.writer import cache_shards
from .runner import command_config
from ..model.device import default_device

SECTION = "cache_features"


def cache_features(cfg: dict) -> dict:
    """Encode the shards the ``cache_features`` section names; returns the feature manifest."""
    c = cfg[SECTION]
    for key in ("shards", "out"):
        if not c[key]:
            raise ValueError(f"{SECTION}.{key} is not set. Fix: {SECTION}.{key}=PATH (raw shards / output folder).")
    check_shard_paths(cfg, [f"{SECTION}.shards"])
    check_writable(f"{SECTION}.out", c["out"], "folder")
    kind, dtype = c.get("kind", "embeddings"), c.get("dtype", "fp16")
    if kind == "maps":
        check_cacheable_maps(cfg)
    encoder = FrozenCLIP(EncoderSpec(**cfg["encoder"])).to(default_device(c["device"]))
    manifest = cache_shards(encoder, c["shards"], c["out"], c["batch_size"], with_opposite=c["opposite"],
                            overwrite=c["overwrite"], progress=progress_enabled(cfg), kind=kind, dtype=dtype,
                            map_sections={k: cfg[k] for k in ("functional_rows", "maps")})
    print(f"{c['out']}: {manifest['num_shards']} feature shards, {manifest['num_samples']} samples, "
          f"{manifest['num_skipped']} skipped")
    return manifest


def main(argv: Sequence[str] | None = None) -> dict:
    return cache_features(command_config(argv))
