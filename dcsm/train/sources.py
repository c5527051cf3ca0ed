"""The training data sources (``data.source``), named here without importing their DataModules
(Lightning), so that the config check at start stays light."""

SHARD_SOURCES = ("shards", "features")  # raw image shards, cached feature / map shards (dcsm.train.shard_data)
DATA_SOURCES = ("synthetic", *SHARD_SOURCES)  # synthetic: scenes drawn on the fly (dcsm.train.synthetic_data)
