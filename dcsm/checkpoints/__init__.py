"""Checkpoint I/O: safe loading (zip tensors only), head export, the authors' released files."""
