"""The diagnostics' names, apart from their code, so that checking a config value against them
imports neither torch nor open_clip (the config check runs before anything is built)."""
from __future__ import annotations

__all__ = ["DIAGNOSTICS", "HEAD_DIAGNOSTICS", "CONTROLLED_EXPERIMENTS"]

HEAD_DIAGNOSTICS = ("heads", "textspan", "pruning")
DIAGNOSTICS = (*HEAD_DIAGNOSTICS, "center_bias")
#: experiments of the controlled variants (issue 27; dcsm.commands.controlled)
CONTROLLED_EXPERIMENTS = ("center_bias", "mitigations", "spurious", "pruning", "segmentation")
