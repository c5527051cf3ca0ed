"""dcsm: Dense Cosine Similarity Map scorers on top of frozen CLIP encoders."""

__version__ = "0.1.0"
