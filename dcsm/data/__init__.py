"""Data sources: synthetic scenes, benchmark loaders, shard io."""
