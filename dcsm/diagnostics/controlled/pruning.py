"""Head pruning on tasks the small controlled CLIPs can do: top-k / bottom-k / random-k heads by
the concept-consistency score (:mod:`dcsm.diagnostics.head_scores`, TextSpan over the task's own
images), mean-ablated (:func:`dcsm.diagnostics.pruning.run_pruning`).

Tasks: ``centred`` (and any sweep variant) -> the center-bias sweep as a 4-way choice, categories
``centre`` / ``border`` / ``between``; ``spurious`` -> the balanced cue scenes' 3-way shape
choice, categories ``aligned`` / ``conflicting`` (the background agrees with the shape or not).
"""

from __future__ import annotations

from typing import Any

import torch

from ..ablation import component_means
from ..decomposition import decompose
from ..head_scores import load_lexicon, rank_heads, score_heads
from ..position_sweep import SweepConfig, centre_border_cells, preprocess, render_sweep
from ..pruning import Task, clip_scorer, run_pruning
from ..textspan import load_text_bank, text_bank, textspan_heads
from .spurious import cue_set

__all__ = ["sweep_task", "cue_task", "prune"]


def sweep_task(enc: Any, sweep_section: dict) -> Task:
    """The position sweep as a task (label 0 = the object's caption)."""
    cfg = SweepConfig.from_dict(sweep_section)
    sweep = render_sweep(cfg, cfg.render_size or int(enc.image_size[0]))
    centre, border = centre_border_cells(cfg.grid, cfg.centre_ring)
    cats = ["centre" if centre[c] else "border" if border[c] else "between" for c in sweep.cells.tolist()]
    return Task("center-bias sweep", preprocess(enc, sweep.images), sweep.options, torch.zeros(len(cats), dtype=torch.long), cats)


def cue_task(enc: Any, scenes_section: dict, size: int, seed: int) -> Task:
    """Balanced cue scenes as a task (label = the true shape's option)."""
    d = cue_set(enc, scenes_section, size, seed)
    cats = ["aligned" if a == b else "conflicting" for a, b in zip(d.shape.tolist(), d.cue.tolist())]
    return Task(f"spurious cue scenes[{size}] seed {seed}", d.images, d.options, d.shape, cats)


def prune(enc: Any, task: Task, diag: dict, ks: list[int], seeds: list[int], batch_size: int,
          scorers: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rank heads by concept consistency over the task's images, then prune (``diag``: ``diagnostics``);
    accuracy of CLIP and of the DCSM ``scorers`` on this encoder (e.g. ``{"dcsm": head}``)."""
    heads = torch.cat([decompose(enc, x, per_token=False).heads.cpu() for x, _ in task.batches(batch_size)])
    bank = load_text_bank(diag["text_bank"])
    T = text_bank(enc, bank, progress=False).cpu()
    spans = textspan_heads(heads, T, bank, m=int(diag["textspan"]["m"]), span_rank=diag["textspan"]["span_rank"], progress=False)
    hs = diag["heads"]
    ranked = rank_heads(score_heads(spans, T, load_lexicon(diag["concept_lexicon"]), k=int(hs["top_k"]), weighting=hs["weighting"]))
    means = component_means(enc, [x for x, _ in task.batches(batch_size)], source=task.name, progress=False)
    p = diag["pruning"]
    out = run_pruning(enc, [(s.layer, s.head) for s in ranked], task, {"clip": clip_scorer(enc), **(scorers or {})}, ks=ks, seeds=seeds,
                      mode=p["mode"], strength=float(p["strength"]), means=means if p["mode"] == "mean" else None,
                      batch_size=batch_size, progress=False)
    out["ranking"] = [{"head": f"L{s.layer}H{s.head}", "score": s.score, "concept": s.concept, "texts": s.texts} for s in ranked]
    return out
