"""Figures and tables of the head diagnostics: head-score grid, pruning curves (PNG, Agg backend),
TextSpan table (Markdown)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from .head_scores import HeadScore  # noqa: E402
from .textspan import SpanResult  # noqa: E402

__all__ = ["head_score_grid", "pruning_curves", "textspan_markdown"]

STYLE = {"top": ("tab:red", "o"), "bottom": ("tab:blue", "s"), "random": ("tab:gray", "^")}


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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


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
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


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
