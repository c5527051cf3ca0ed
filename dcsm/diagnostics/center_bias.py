"""Center bias of CLIP and of DCSM scorers: a position sweep with a centre/border ratio, per-patch
heatmaps, and the ratio under two training-free mitigations (``dcsm.diagnostics.mitigations``).

**Position sweep.** Every object of a vocabulary (colours x shapes, drawn with the synthetic
scenes' :func:`~dcsm.data.synthetic.render.draw_shape`) is drawn alone at every cell of a G x G grid
over the image, ``repeats`` times with seeded background and in-cell position jitter. Each
image is scored as a multiple-choice item: its object's caption against ``num_options - 1``
other objects' captions (seeded per image), by CLIP (pooled cosine) and by every scorer (e.g. a
DCSM checkpoint); CLIP is also scored zero-shot over the whole vocabulary (``clip_zero_shot``).
A tie for the top score counts as wrong.

**Centre and border.** Cell ``(r, c)`` has ring index ``min(r, c, G-1-r, G-1-c)``: ring 0 is the
border ring (the outermost cells), the highest ring the middle. *Centre* cells are those with ring
index >= ``centre_ring``; *border* cells are ring 0 (with G=5 and ``centre_ring=1``: the inner
3 x 3 cells against the 16 outer ones). ``ratio = acc(centre) / acc(border)`` (undefined, null,
when the border accuracy is 0); ``diff = acc(centre) - acc(border)``. Intervals: percentile
bootstrap, images resampled with replacement within the centre set and within the border set.

**Heatmaps.** CLIP: each patch position's direct contribution (all layers and heads, from the
exact decomposition :func:`~dcsm.diagnostics.decomposition.decompose`) to the cosine of the
pooled embedding with the true caption, averaged over the sweep (objects equally often at every
cell, so a non-flat map is the model's, not the data's); plus the last block's class-token
attention over patches (mean over heads). DCSM: gradient x input of the true caption's score
over the map's patch axis (:func:`~dcsm.diagnostics.option_scoring.dcsm_patch_attribution`).

**Mitigations.** For each strength, the whole sweep again: visual prompting draws the prompt
around the probed cell (the cell holding the object); attention redistribution reweights the
final block's class-token attention toward a prior. Strength 0 is the identity.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .hook_points import capture
from .decomposition import decompose
from .mitigations import PRIORS, PROMPT_SHAPES, check_strength, redistribute_attention, visual_prompt
from .option_scoring import CLIP, TextTable, score_pass
from .pruning import ScoreFn
from .position_sweep import (
    Sweep,
    SweepConfig,
    config_error,
    centre_border_cells,
    preprocess,
    render_sweep,
    sweep_scores,
)


__all__ = ["clip_patch_heatmap", "run_sweep", "run_mitigations", "run_center_bias", "write_center_bias_files"]

# ----------------------------------------------------------------------------- heatmaps
def ring_means(grid: torch.Tensor) -> list[float]:
    """Mean of a ``(gh, gw)`` map per ring (0 = the border ring, inward from there)."""
    gh, gw = grid.shape
    r, c = torch.arange(gh)[:, None], torch.arange(gw)[None, :]
    ring = torch.minimum(torch.minimum(r, gh - 1 - r), torch.minimum(c, gw - 1 - c)).flatten()
    return (torch.bincount(ring, weights=grid.flatten().double()) / torch.bincount(ring)).tolist()


@torch.no_grad()
def clip_patch_heatmap(encoder, images: torch.Tensor, texts: torch.Tensor, batch_size: int) -> dict[str, Any]:
    """Mean per-patch direct contribution to cos(pooled image, true caption) ``(gh, gw)``, and the
    last block's mean class-token attention over patches ``(gh, gw)``.

    ``texts``: ``(N, D)`` unit-norm caption embeddings, one per image. Per image, the patch terms, the
    class-token position's term and the rest (embedding, MLPs, biases) sum to the cosine.
    """
    model = getattr(encoder, "model", encoder)
    gh, gw = model.visual.grid_size
    last = len(model.visual.transformer.resblocks) - 1
    contrib, attn, parts = [], [], []
    for i in range(0, len(images), batch_size):
        x, t = images[i: i + batch_size], texts[i: i + batch_size].to(encoder.device).float()
        with capture(model, [f"visual.blocks.{last}.attn.hook_pattern"], transform=lambda p: p[:, :, 0, 1:].mean(dim=1)) as cache:
            d = decompose(encoder, x, per_token=True)
        norm = d.total().norm(dim=-1)  # (B,)
        per_token = torch.einsum("blhtd,bd->bt", d.heads, t) / norm[:, None]  # (B, T)
        rest = ((d.embedding + d.mlps.sum(dim=1) + d.bias) * t).sum(dim=-1) / norm
        contrib.append(per_token[:, 1:].cpu())
        attn.append(next(iter(cache.values())).float().cpu())
        parts.append(torch.stack([per_token[:, 1:].sum(dim=1), per_token[:, 0], rest], dim=1).cpu())
    patch = torch.cat(contrib)
    p = torch.cat(parts).mean(dim=0)
    contribution, attention = patch.mean(dim=0).view(gh, gw), torch.cat(attn).mean(dim=0).view(gh, gw)
    return {"patch_contribution": contribution.tolist(), "cls_attention": attention.tolist(),
            "patch_contribution_ring_means": ring_means(contribution), "cls_attention_ring_means": ring_means(attention),
            "mean_cosine": float(p.sum()), "mean_patch_sum": float(p[0]), "mean_cls_position": float(p[1]),
            "mean_rest": float(p[2]), "n": len(patch)}


def dcsm_heatmap(encoder, attributions: torch.Tensor) -> dict[str, Any]:
    """Mean gradient x input over images ``(gh, gw)`` from ``(N, P)`` map-column attributions."""
    gh, gw = encoder.grid_size
    cols = attributions[:, -gh * gw:]  # drop the CLS column of keep_cls maps
    mean = cols.mean(dim=0).view(gh, gw)
    return {"patch_attribution": mean.tolist(), "patch_attribution_ring_means": ring_means(mean),
            "cls_column": float(attributions[:, 0].mean()) if attributions.shape[1] > gh * gw else None,
            "n": len(cols)}


# ----------------------------------------------------------------------------- sweep runs
def run_sweep(encoder, cfg: SweepConfig, scorers: dict[str, ScoreFn] | None, batch_size: int,
              prompt: dict | None = None, attention: dict | None = None, heatmaps: bool = False,
              sweep: Sweep | None = None, table: TextTable | None = None) -> dict[str, Any]:
    """One pass over the sweep, optionally under a mitigation, -> :func:`sweep_scores` (and heatmaps).

    Args:
        prompt: ``{"strength", "shape", "colour", "width"}`` (width: fraction of the side), drawn
            around each image's probed cell.
        attention: ``{"strength", "prior", "layer"}``.
        heatmaps: also the CLIP decomposition and DCSM gradient x input heatmaps.
    """
    size = cfg.render_size or int(encoder.image_size[0])
    sweep = sweep or render_sweep(cfg, size)
    vocab = cfg.vocabulary()
    table = table or TextTable(encoder, vocab)
    images = sweep.images
    if prompt is not None:
        width = max(1, round(float(prompt["width"]) * size))
        images = [visual_prompt(im, box.tolist(), prompt["strength"], prompt["colour"], prompt["shape"], width)
                  for im, box in zip(images, sweep.cell_boxes)]
    x = preprocess(encoder, images)
    labels = torch.zeros(len(images), dtype=torch.long)
    att = attention or {"strength": 0.0, "prior": PRIORS[0], "layer": -1}
    with redistribute_attention(encoder, att["strength"], att["prior"], int(att["layer"])):
        result = score_pass(encoder, x, sweep.options, table, scorers, batch_size, labels=labels, attribute=heatmaps)
        out: dict[str, Any] = {"scores": sweep_scores(cfg, sweep, result, table.pooled[table.index([vocab])[0]])}
        if heatmaps:
            texts = table.pooled[table.index([[vocab[int(o)]] for o in sweep.objects])[:, 0]]
            out["heatmaps"] = {CLIP: clip_patch_heatmap(encoder, x, texts, batch_size)}
            out["heatmaps"].update({name: dcsm_heatmap(encoder, a) for name, a in result.attributions.items()})
    return out


def check_mitigations(m: dict) -> None:
    """Validate ``diagnostics.center_bias.mitigations`` (strengths in [0, 1], known shape and prior)."""
    for key in ("prompt_strengths", "prompt_shape", "prompt_colour", "prompt_width", "attention_strengths",
                "attention_prior", "attention_layer"):
        if key not in m:
            raise config_error(f"mitigations.{key}", "key missing", "start from configs/default.yaml's diagnostics.center_bias")
    for key in ("prompt_strengths", "attention_strengths"):
        for s in m[key]:
            try:
                check_strength(s, key)
            except ValueError as err:
                raise config_error(f"mitigations.{key}", str(err).split(". Fix")[0], "use strengths in [0, 1]") from None
    if m["prompt_shape"] not in PROMPT_SHAPES:
        raise config_error("mitigations.prompt_shape", f"'{m['prompt_shape']}'", f"use one of {list(PROMPT_SHAPES)}")
    if m["attention_prior"] not in PRIORS:
        raise config_error("mitigations.attention_prior", f"'{m['attention_prior']}'", f"use one of {list(PRIORS)}")


def run_mitigations(encoder, cfg: SweepConfig, m: dict, scorers: dict[str, ScoreFn] | None, batch_size: int,
                    sweep: Sweep, table: TextTable, progress: bool = True) -> dict[str, list[dict]]:
    """``{"visual_prompt": [...], "attention": [...]}``: per strength, every scorer's sweep statistics
    (``acc``, ``centre_acc``, ``border_acc``, ``ratio`` with intervals, ``cell_acc``)."""
    check_mitigations(m)
    runs: list[tuple[str, float, Callable[[], dict]]] = []
    for s in m["prompt_strengths"]:
        p = {"strength": float(s), "shape": m["prompt_shape"], "colour": m["prompt_colour"], "width": m["prompt_width"]}
        runs.append(("visual_prompt", float(s), lambda p=p: run_sweep(encoder, cfg, scorers, batch_size, prompt=p,
                                                                     sweep=sweep, table=table)))
    for s in m["attention_strengths"]:
        a = {"strength": float(s), "prior": m["attention_prior"], "layer": int(m["attention_layer"])}
        runs.append(("attention", float(s), lambda a=a: run_sweep(encoder, cfg, scorers, batch_size, attention=a,
                                                                 sweep=sweep, table=table)))
    out: dict[str, list[dict]] = {"visual_prompt": [], "attention": []}
    for kind, s, fn in tqdm(runs, desc="center-bias mitigations", disable=not progress, leave=False):
        out[kind].append({"strength": s, "scores": fn()["scores"]})
    return out


# ----------------------------------------------------------------------------- the diagnostic
DEFINITIONS = {
    "cells": "cell (r, c) of the G x G grid, row-major index r * G + c; ring index min(r, c, G-1-r, G-1-c)",
    "centre": "cells with ring index >= centre_ring",
    "border": "cells with ring index 0 (the outermost ring)",
    "ratio": "accuracy on centre cells / accuracy on border cells (null when the border accuracy is 0); 1 = no bias",
    "diff": "accuracy on centre cells - accuracy on border cells",
    "interval": "percentile bootstrap; images resampled with replacement within the centre and within the border set",
    "clip_zero_shot": "CLIP: argmax over every object caption of the vocabulary",
    "clip": "CLIP: pooled cosine over the image's options (its object + num_options-1 other objects)",
    "ties": "a tie for the top score counts as wrong",
    "heatmaps": "clip.patch_contribution: per patch, direct (all layers and heads) contribution to cos(pooled image, "
                "true caption) from the exact decomposition, mean over the sweep; clip.cls_attention: the last block's "
                "class-token attention over patches, mean over heads and images; <dcsm>.patch_attribution: gradient x "
                "input of the true caption's DCSM score over the map's patch axis, summed over token rows, mean over "
                "the sweep (the pooled-cosine residual, if any, has no patch axis and is left out); *_ring_means: "
                "the map's mean per ring of patches (0 = the border ring of the patch grid, inward from there)",
}


def _fmt(v: float | None, ci: list | None = None, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    f = (lambda x: f"{100 * x:.1f}") if pct else (lambda x: f"{x:.2f}")
    if ci is None:
        return f(v)
    return f"{f(v)} [{f(ci[0]) if ci[0] is not None else 'n/a'}, {f(ci[1]) if ci[1] is not None else 'n/a'}]"


def summary_markdown(report: dict, title: str) -> str:
    """Tables of the baseline sweep, the mitigations and the Cross-Eyed protocol."""
    ci = f"{100 * report['sweep']['ci']:.0f}%"
    lines = [f"# Center bias: {title}", "", f"Sweep: {report['sweep']['n_images']} images, grid "
             f"{report['sweep']['grid']} x {report['sweep']['grid']}, centre = ring >= {report['sweep']['centre_ring']}; "
             f"intervals: {ci} bootstrap ({report['sweep']['n_bootstrap']} resamples).", "",
             "| scorer | acc (%) | centre acc (%) | border acc (%) | centre/border ratio | centre - border (pp) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in report["baseline"].items():
        lines.append(f"| {name} | {_fmt(s['acc'], pct=True)} | {_fmt(s['centre_acc'], pct=True)} | "
                     f"{_fmt(s['border_acc'], pct=True)} | {_fmt(s['ratio'], s['ratio_ci'])} | {_fmt(s['diff'], s['diff_ci'], True)} |")
    lines += ["", "## Mitigations", "", "| mitigation | strength | scorer | acc (%) | centre/border ratio |", "|---|---:|---|---:|---:|"]
    for kind, rows in report["mitigations"].items():
        for r in rows:
            for name, s in r["scores"].items():
                lines.append(f"| {kind} | {r['strength']:g} | {name} | {_fmt(s['acc'], pct=True)} | {_fmt(s['ratio'], s['ratio_ci'])} |")
    lines += ["", "## Cross-Eyed protocol", "", f"Captions: {report['cross_eyed']['captions']}", "",
              "| data | scorer | acc (%) | centred acc (%) | off-centre acc (%) | n centred / off-centre | picks (pair/first/second/unrelated) |",
              "|---|---|---:|---:|---:|---:|---|"]
    for data in ("whatsup", "synthetic"):
        part = report["cross_eyed"].get(data) or {}
        for name, s in (part.get("scores") or {}).items():
            picks = "/".join(str(v) for v in s["choices"].values())
            lines.append(f"| {data} | {name} | {_fmt(s['acc'], pct=True)} | {_fmt(s['centred_acc'], pct=True)} | "
                         f"{_fmt(s['off_centre_acc'], pct=True)} | {s['n_centred']} / {s['n_off_centre']} | {picks} |")
    return "\n".join(lines) + "\n"


def run_center_bias(encoder, section: dict, out_dir: str | Path, scorers: dict[str, ScoreFn] | None, batch_size: int,
                    progress: bool = True) -> tuple[dict, dict[str, str]]:
    """The whole diagnostic on ``encoder`` (a FrozenCLIP) and ``scorers`` (e.g. ``{"dcsm": model}``).

    Returns the JSON-ready report and the files written into ``out_dir``: ``center_bias_cells.png``
    (per-cell accuracy), ``center_bias_patches.png`` (per-patch heatmaps),
    ``center_bias_mitigations.png`` and ``center_bias.md``. Figures are drawn from the report's own
    numbers (after a JSON round trip).
    """
    from .cross_eyed import run_cross_eyed

    for key in ("cross_eyed", "mitigations"):
        if key not in section:
            raise config_error(key, "key missing", "start from configs/default.yaml's diagnostics.center_bias section")
    cfg = SweepConfig.from_dict(section)
    check_mitigations(section["mitigations"])
    size = cfg.render_size or int(encoder.image_size[0])
    sweep = render_sweep(cfg, size)
    table = TextTable(encoder, cfg.vocabulary())
    base = run_sweep(encoder, cfg, scorers, batch_size, heatmaps=True, sweep=sweep, table=table)
    mitigations = run_mitigations(encoder, cfg, section["mitigations"], scorers, batch_size, sweep, table, progress)
    cross = run_cross_eyed(encoder, section["cross_eyed"], scorers, batch_size, size)
    report = {"definitions": DEFINITIONS,
              "sweep": {**{f.name: getattr(cfg, f.name) for f in fields(cfg)}, "render_size": size,
                        "n_images": len(sweep.images), "vocabulary": cfg.vocabulary(),
                        "centre_cells": centre_border_cells(cfg.grid, cfg.centre_ring)[0].view(cfg.grid, cfg.grid).tolist()},
              "baseline": base["scores"], "heatmaps": base["heatmaps"], "mitigations": mitigations, "cross_eyed": cross}
    report = json.loads(json.dumps(report))  # the figures read exactly these numbers
    spec = getattr(encoder, "spec", None)
    title = f"{spec.model} ({spec.pretrained or 'random init'})" if spec is not None else type(encoder).__name__
    return report, write_center_bias_files(report, out_dir, title)


def write_center_bias_files(report: dict, out_dir: str | Path, title: str) -> dict[str, str]:
    """The figures and the Markdown summary of a center_bias report (as saved in ``diagnostics.json``)."""
    from .plots import cell_accuracy_heatmaps, mitigation_curves, patch_heatmaps

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"center_bias_cells_png": str(cell_accuracy_heatmaps(
        {name: s["cell_acc"] for name, s in report["baseline"].items()}, report["sweep"]["centre_cells"],
        out / "center_bias_cells.png", title=f"{title}: recognition accuracy per cell (centre cells outlined)"))}
    maps = {"clip: patch contribution": report["heatmaps"][CLIP]["patch_contribution"],
            "clip: last-block CLS attention": report["heatmaps"][CLIP]["cls_attention"]}
    maps.update({f"{name}: grad x input": h["patch_attribution"] for name, h in report["heatmaps"].items() if name != CLIP})
    files["center_bias_patches_png"] = str(patch_heatmaps(maps, out / "center_bias_patches.png",
                                                          title=f"{title}: per-patch heatmaps, mean over the sweep"))
    files["center_bias_mitigations_png"] = str(mitigation_curves(report["mitigations"], out / "center_bias_mitigations.png",
                                                                 title=f"{title}: mitigations"))
    md = out / "center_bias.md"
    md.write_text(summary_markdown(report, title), encoding="utf-8")
    files["center_bias_md"] = str(md)
    return files
