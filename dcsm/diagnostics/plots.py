"""Figures and tables of the diagnostics: head-score grid, pruning curves, center-bias heatmaps and
mitigation curves (PNG, Agg backend), TextSpan table (Markdown). Every figure is drawn from the
JSON-ready numbers it is given, nothing recomputed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from .head_scores import HeadScore  # noqa: E402
from .textspan import SpanResult  # noqa: E402

__all__ = ["head_score_grid", "pruning_curves", "textspan_markdown", "cell_accuracy_heatmaps", "patch_heatmaps",
           "mitigation_curves"]

STYLE = {"top": ("tab:red", "o"), "bottom": ("tab:blue", "s"), "random": ("tab:gray", "^")}
DPI = 130


def _save(fig: plt.Figure, path: str | Path, title: str = "") -> Path:
    """The common tail of every figure: optional suptitle, tight layout, PNG at :data:`DPI`, closed."""
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def head_score_grid(scores: list[HeadScore], path: str | Path, title: str = "") -> Path:
    """Layers x heads heatmap of the concept-consistency score, each cell labelled with its concept."""
    L = max(s.layer for s in scores) + 1
    H = max(s.head for s in scores) + 1
    grid = [[0.0] * H for _ in range(L)]
    for s in scores:
        grid[s.layer][s.head] = s.score
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * H, 1.0 + 0.45 * L))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=max(1e-6, max(max(r) for r in grid)), aspect="auto")
    for s in scores:
        ax.text(s.head, s.layer, (s.concept or "-")[:4], ha="center", va="center", fontsize=6,
                color="white" if s.score < 0.6 * max(max(r) for r in grid) else "black")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(H))
    ax.set_yticks(range(L))
    ax.set_title(title or "head concept-consistency score (label: concept)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def pruning_curves(result: dict, path: str | Path, title: str = "") -> Path:
    """One panel per scorer: accuracy vs k for top / bottom / random (mean +- std over seeds)."""
    names = list(result["curves"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for kind, pts in result["curves"][name].items():
            if not pts:
                continue
            color, marker = STYLE[kind]
            ax.errorbar([p["k"] for p in pts], [p["acc"] for p in pts], yerr=[p["std"] for p in pts],
                        color=color, marker=marker, capsize=3, label=f"{kind}-k" + (" (mean±std)" if kind == "random" else ""))
        ax.axhline(result["baseline"][name]["acc"], color="black", lw=0.8, ls="--", label="no pruning")
        ax.axhline(result["all_attention"][name]["acc"], color="tab:purple", lw=0.8, ls=":", label="all heads ablated")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"k heads pruned ({result['mode']}, strength {result['strength']})")
        ax.set_ylabel("MCQ accuracy")
        ax.set_title(name, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    return _save(fig, path, title)


def textspan_markdown(spans: list[SpanResult], scores: list[HeadScore] | None, path: str | Path, max_heads: int | None = None) -> Path:
    """Markdown table: one row per head (ranked by score when given), its top texts with variance shares."""
    by = {(s.layer, s.head): s for s in spans}
    order = [(s.layer, s.head) for s in scores] if scores else list(by)
    score_of = {(s.layer, s.head): s for s in scores} if scores else {}
    lines = ["| head | score | concept | TextSpan texts (variance share) | remaining |", "|---|---:|---|---|---:|"]
    for key in order[: max_heads or len(order)]:
        s = by[key]
        texts = "; ".join(f"{t} ({float(v):.2f})" for t, v in zip(s.texts, s.variance))
        sc = score_of.get(key)
        rem = f"{float(s.remaining[-1]):.2f}" if len(s.remaining) else "-"
        lines.append(f"| L{s.layer}H{s.head} | {sc.score:.3f} | {sc.concept or '-'} | {texts.replace('|', '/')} | {rem} |"
                     if sc else f"| L{s.layer}H{s.head} | - | - | {texts.replace('|', '/')} | {rem} |")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- center bias
def _grid_panels(panels: dict[str, list[list[float]]], path: str | Path, title: str, cmap: str, shared: bool,
                 fmt: str, outline: list[list[bool]] | None = None, label: str = "", annotate_max: int = 10) -> Path:
    """One annotated heatmap per panel, drawn from the nested lists as given."""
    names = list(panels)
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.4), squeeze=False)
    vals = [v for n in names for row in panels[n] for v in row if v == v]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    for ax, name in zip(axes[0], names):
        grid = panels[name]
        g = [v for row in grid for v in row if v == v]
        vmin, vmax = (lo, hi) if shared else ((min(g), max(g)) if g else (0.0, 1.0))
        if cmap == "RdBu_r" and not shared:  # diverging: centred on zero
            m = max(abs(vmin), abs(vmax), 1e-12)
            vmin, vmax = -m, m
        im = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-6)
        if len(grid) <= annotate_max:  # numbers in the cells while they fit
            for r, row in enumerate(grid):
                for c, v in enumerate(row):
                    dark = abs(v) > 0.6 * vmax if cmap == "RdBu_r" else (v - vmin) < 0.5 * (vmax - vmin)
                    ax.text(c, r, format(v, fmt), ha="center", va="center", fontsize=6 if len(grid) > 6 else 8,
                            color="white" if dark else "black")
        if outline is not None:  # centre cells
            for r, row in enumerate(outline):
                for c, on in enumerate(row):
                    if on:
                        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="tab:red", lw=1.2))
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, label=label)
    return _save(fig, path, title)


def cell_accuracy_heatmaps(panels: dict[str, list[list[float]]], centre: list[list[bool]], path: str | Path,
                           title: str = "") -> Path:
    """Per-cell recognition accuracy (0..1, one colour scale) per scorer; centre cells outlined in red."""
    return _grid_panels(panels, path, title, "viridis", True, ".2f", centre, "accuracy")


def patch_heatmaps(panels: dict[str, list[list[float]]], path: str | Path, title: str = "") -> Path:
    """Per-patch contribution / attention maps, each on its own (zero-centred) scale."""
    return _grid_panels(panels, path, title, "RdBu_r", False, ".2g", annotate_max=5)


def mitigation_curves(mitigations: dict, path: str | Path, title: str = "") -> Path:
    """Columns: visual prompt, attention redistribution. Rows: centre/border ratio (percentile
    interval as error bars; 1 = no bias) and overall accuracy, against strength, per scorer."""
    kinds = [k for k in ("visual_prompt", "attention") if mitigations.get(k)]
    fig, axes = plt.subplots(2, max(1, len(kinds)), figsize=(4.4 * max(1, len(kinds)), 6.0), squeeze=False)
    for col, kind in enumerate(kinds):
        rows = mitigations[kind]
        names = list(rows[0]["scores"])
        for i, name in enumerate(names):
            s = [r["strength"] for r in rows]
            dodge = (i - (len(names) - 1) / 2) * 0.012  # keep the scorers' error bars apart
            ratio = [r["scores"][name]["ratio"] for r in rows]
            ci = [r["scores"][name]["ratio_ci"] for r in rows]
            pts = [(x + dodge, y, c) for x, y, c in zip(s, ratio, ci) if y is not None and None not in c]
            if pts:
                xs, ys, cs = zip(*pts)
                err = [[y - c[0] for y, c in zip(ys, cs)], [c[1] - y for y, c in zip(ys, cs)]]
                axes[0][col].errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
            axes[1][col].plot(s, [r["scores"][name]["acc"] for r in rows], marker="o", label=name)
        axes[0][col].axhline(1.0, color="black", lw=0.8, ls="--")
        axes[0][col].set_title(kind.replace("_", " "), fontsize=10)
        axes[0][col].set_ylabel("centre / border accuracy")
        axes[1][col].set_ylabel("sweep accuracy")
        axes[1][col].set_ylim(-0.02, 1.02)
        for r in (0, 1):
            axes[r][col].set_xlabel("strength (0 = identity)")
            axes[r][col].legend(fontsize=7)
    return _save(fig, path, title)
