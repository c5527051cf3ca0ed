"""The diagnostics' names, apart from their code, so that checking a config value against them
imports neither torch nor open_clip (the config check runs before anything is built)."""
from __future__ import annotations

__all__ = ["DIAGNOSTICS", "HEAD_DIAGNOSTICS", "CONTROLLED_EXPERIMENTS", "CONTROLLED_VARIANTS", "CONTROLLED_KEYS"]

HEAD_DIAGNOSTICS = ("heads", "textspan", "pruning")
DIAGNOSTICS = (*HEAD_DIAGNOSTICS, "center_bias")
#: experiments of the controlled variants (issue 27; dcsm.commands.controlled)
CONTROLLED_EXPERIMENTS = ("center_bias", "mitigations", "spurious", "pruning", "segmentation")
#: configs/pretrain_controlled_<variant>.yaml; the per-patch decomposition needs a class-token model
CONTROLLED_VARIANTS = ("centred", "meanpool", "uniform", "spurious")
CLASS_TOKEN_VARIANTS = ("centred", "uniform", "spurious")
#: the ``controlled:`` section's rules as data, ``key: (kind, *args)`` (dcsm.config_schema.TABLE_KINDS)
CONTROLLED_KEYS: dict[str, tuple] = {
    "out_dir": ("str",), "weights_dir": ("str",), "heads_dir": ("str",), "experiments": ("choices", CONTROLLED_EXPERIMENTS), "seeds": ("seeds",),
    "device": ("device",), "batch_size": ("int", 1), "center_bias.variants": ("choices", CONTROLLED_VARIANTS),
    "mitigations.strengths": ("floats", 0.0, 1.0), "mitigations.runs": ("int", 1),
    "spurious.size": ("int", 9), "spurious.test_seed": ("seed",), "spurious.select_size": ("int", 9),
    "spurious.select_seed": ("seed",), "spurious.ks": ("ints", 1), "spurious.random_seeds": ("seeds",),
    "spurious.textspan_m": ("int", 1), "pruning.variants": ("choices", CONTROLLED_VARIANTS), "pruning.ks": ("ints", 1),
    "pruning.seeds": ("seeds",),
    "segmentation.variants": ("choices", CLASS_TOKEN_VARIANTS), "segmentation.size": ("int", 1),
    "segmentation.seed": ("seed",), "segmentation.box": ("float", 0.0, 1.0, True),
}
