"""Allowed values of the encoder wrapper's string options, apart from its code, so that the config
check (which runs before anything is built) names them without importing open_clip (seconds)."""
from __future__ import annotations

__all__ = ["PAD_ROWS", "PATCH_SOURCES"]

PATCH_SOURCES = ("joint", "trunk")  # encoder.patch_source: patches in the joint space, or the trunk's own
PAD_ROWS = ("zero", "eot")  # encoder.pad_rows: what the rows past a caption's EOT hold
