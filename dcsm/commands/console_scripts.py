"""Console scripts installed with the package (``pyproject.toml`` ``[project.scripts]``).

Each runs one command through :func:`dcsm.commands.runner.run_command` (``--config`` + ``key=value``,
``--help``, one-line errors with exit 2); the command module is imported only when called.
"""

from __future__ import annotations

from .runner import run_command


def _run(module: str) -> None:
    run_command(module)  # the config is checked before the module is imported


def train() -> None:
    """``dcsm-train``: same as ``python train.py``."""
    _run("dcsm.commands.train")


def evaluate() -> None:
    """``dcsm-evaluate``: same as ``python evaluate.py``."""
    _run("dcsm.commands.evaluate")


def synthetic_shards() -> None:
    """``dcsm-synthetic-shards``: rendered scenes -> image shards."""
    _run("dcsm.commands.synthetic_shards")


def pair_shards() -> None:
    """``dcsm-pair-shards``: image-caption pairs -> MCQ image shards."""
    _run("dcsm.commands.pair_shards")


def cache_features() -> None:
    """``dcsm-cache-features``: image shards -> fp16 feature shards."""
    _run("dcsm.commands.cache_features")


def miniature_benchmarks() -> None:
    """``dcsm-miniature-benchmarks``: drawn stand-in images for the benchmark annotation files."""
    _run("dcsm.commands.miniature_benchmarks")


def format_transfer() -> None:
    """``dcsm-format-transfer``: synthetic scenes in the public benchmarks' file formats."""
    _run("dcsm.commands.format_transfer")


def pretrain_toy_clip() -> None:
    """``dcsm-pretrain-toy-clip``: pretrain the small offline CLIP."""
    _run("dcsm.commands.pretrain_toy_clip")


def export_head() -> None:
    """``dcsm-export-head``: a trained head -> safetensors + JSON."""
    _run("dcsm.commands.export_head")


def controlled() -> None:
    """``dcsm-controlled``: diagnostics on the small CLIPs with planted biases (issue 27)."""
    _run("dcsm.commands.controlled")
