"""Training: the LightningModule, DataModules (synthetic scenes, shards), resume, run lock, callbacks."""
