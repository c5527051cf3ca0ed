"""The training options' allowed values (``data.source``, ``loss.kind``), named here without
importing their owners (Lightning), so that the config check at start stays light."""

SHARD_SOURCES = ("shards", "features")  # raw image shards, cached feature / map shards (dcsm.train.shard_data)
DATA_SOURCES = ("synthetic", *SHARD_SOURCES)  # synthetic: scenes drawn on the fly (dcsm.train.synthetic_data)
LOSSES = ("mcq", "paired")  # loss.kind (dcsm.train.module.DCSMLitModule): softmax over options, or all pairs of a batch
