"""Diagnostics on small CLIPs whose pretraining data planted a known bias (issue 27).

The weights come from ``data_prep/pretrain_toy_clip.py`` with ``configs/pretrain_controlled_*.yaml``
(variants ``centred``, ``meanpool``, ``uniform``, ``spurious``; one folder per variant and seed,
:mod:`.models`). The experiments reuse the diagnostics of :mod:`dcsm.diagnostics` on them:
:mod:`.center` (center bias over seeds, mitigations), :mod:`.spurious` (worst-group accuracy,
heads that carry the background cue, their mean-ablation against random heads),
:mod:`.segmentation` (zero-shot segmentation from the per-patch decomposition) and pruning
(:func:`dcsm.diagnostics.run.run_diagnostics`); :mod:`.report` writes JSON, PNG and Markdown.
"""
