"""JSON, PNG and Markdown of each controlled experiment, side by side in one folder, and the same to
W&B when a run is given. Every figure and table is drawn from the JSON it sits beside."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ...io import atomic_write_json, atomic_write_text
from ..plots import _save, mitigation_curves, plt
from .center import SCORERS

__all__ = ["write_experiment", "MARKDOWN", "FIGURES"]


def _f(v: float | None, pct: bool = False) -> str:
    return "n/a" if v is None else (f"{100 * v:.1f}" if pct else f"{v:.2f}")


def _ci(c: list | None) -> str:
    return "n/a" if not c or c[0] is None else f"[{c[0]:.2f}, {c[1]:.2f}]"


def center_bias_md(r: dict) -> str:
    """Per run (image-bootstrap interval) and over seeds (t-interval of the mean ratio)."""
    lines = ["# Center bias of the controlled variants", "",
             f"Sweep: grid {r['sweep']['grid']}, centre = ring >= {r['sweep']['centre_ring']}, object size "
             f"{r['sweep']['object_size']}, {r['sweep']['num_options']} options; ratio = centre acc / border acc (1 = no bias).", "",
             "## Over seeds (mean of the per-seed ratios, 95% t-interval)", "",
             "| variant | scorer | seeds | ratio | 95% interval | border acc (%) | centre acc (%) |", "|---|---|---:|---:|---|---:|---:|"]
    for v, per in r["over_seeds"].items():
        for name, s in per.items():
            lines.append(f"| {v} | {name} | {s['ratio']['n']} | {_f(s['ratio']['mean'])} | {_ci(s['ratio']['ci'])} | "
                         f"{_f(s['border_acc']['mean'], True)} | {_f(s['centre_acc']['mean'], True)} |")
    lines += ["", "## Per run (95% percentile bootstrap over images)", "",
              "| variant | seed | scorer | acc (%) | centre (%) | border (%) | ratio | interval |", "|---|---:|---|---:|---:|---:|---:|---|"]
    for v, per_seed in r["runs"].items():
        for seed, scores in per_seed.items():
            for name, s in scores.items():
                lines.append(f"| {v} | {seed} | {name} | {_f(s['acc'], True)} | {_f(s['centre_acc'], True)} | "
                             f"{_f(s['border_acc'], True)} | {_f(s['ratio'])} | {_ci(s['ratio_ci'])} |")
    if r["missing"]:
        lines += ["", f"Missing runs (no weights): {', '.join(r['missing'])}"]
    return "\n".join(lines) + "\n"


def _scorers(r: dict) -> list[str]:
    """Scorers present in any run, in the sweep's order (``dcsm`` only where heads were trained)."""
    found = {name for per in r["runs"].values() for scores in per.values() for name in scores}
    return [name for name in SCORERS if name in found]


def center_bias_png(r: dict, path: Path) -> Path:
    names = _scorers(r) or ["clip"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for i, (v, per) in enumerate(r["runs"].items()):
            ratios = [s[name]["ratio"] for s in per.values() if name in s and s[name]["ratio"] is not None]
            ax.scatter([i] * len(ratios), ratios, color="tab:gray", s=14, zorder=3)
            o = r["over_seeds"].get(v, {}).get(name, {}).get("ratio", {})
            if o.get("mean") is not None:
                lo, hi = o["ci"] if o["ci"][0] is not None else (o["mean"], o["mean"])
                ax.errorbar([i + 0.15], [o["mean"]], yerr=[[o["mean"] - lo], [hi - o["mean"]]], fmt="o", color="tab:red", capsize=4)
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xticks(range(len(r["runs"])), list(r["runs"]))
        ax.set_ylabel("centre / border accuracy")
        ax.set_title(f"{name}: seeds (grey), mean with 95% t-interval (red)", fontsize=8)
    return _save(fig, path, "Center bias by pretraining data and pooling")


def mitigations_md(r: dict) -> str:
    lines = ["# Mitigations on the centred variant", "", f"Runs: {', '.join(r['runs'])}", "",
             "| run | mitigation | strength | scorer | acc (%) | border acc (%) | ratio | 95% interval |",
             "|---|---|---:|---|---:|---:|---:|---|"]
    for run, res in r["runs"].items():
        for kind, rows in res.items():
            for row in rows:
                for name, s in row["scores"].items():
                    lines.append(f"| {run} | {kind} | {row['strength']:g} | {name} | {_f(s['acc'], True)} | "
                                 f"{_f(s['border_acc'], True)} | {_f(s['ratio'])} | {_ci(s['ratio_ci'])} |")
    return "\n".join(lines) + "\n"


def mitigations_png(r: dict, path: Path) -> Path:
    first = next(iter(r["runs"]))
    return mitigation_curves(r["runs"][first], path, title=f"centred ({first}): mitigations")


def spurious_md(r: dict) -> str:
    b = r["baseline"]
    lines = ["# Spurious background cue", "", f"Test scenes: {r['n_test']} (9 balanced groups shape x background); "
             f"heads ranked on {r['n_select']} other scenes.", "",
             f"No ablation: accuracy {_f(b['acc'], True)}%, worst group {_f(b['worst_group'], True)}%, aligned "
             f"{_f(b['aligned'], True)}%, conflicting {_f(b['conflicting'], True)}%.", "",
             "| k | ablated (cue heads) | worst group (%) | acc (%) | random heads: worst group (%) | random: acc (%) | "
             "worst-group gain over random (pp) |", "|---:|---|---:|---:|---:|---:|---:|"]
    for a in r["ablations"]:
        lines.append(f"| {a['k']} | {', '.join(a['cue_heads'])} | {_f(a['cue']['worst_group'], True)} | {_f(a['cue']['acc'], True)} | "
                     f"{_f(a['random_mean_worst_group'], True)} | {_f(a['random_mean_acc'], True)} | "
                     f"{100 * a['worst_group_gain_over_random']:+.1f} |")
    lines += ["", "## Heads that carry the background (top of the cue score)", "", "| head | cue score | concept (score) | TextSpan texts |",
              "|---|---:|---|---|"]
    flat = {h: s for h, s in zip(r["ranking"], sorted([v for row in r["cue_score"] for v in row], reverse=True))}
    for t in r["top_heads"]:
        lines.append(f"| {t['head']} | {flat[t['head']]:.3f} | {t['concept']} ({t['concept_score']:.2f}) | {'; '.join(t['textspan'][:5])} |")
    return "\n".join(lines) + "\n"


def spurious_png(r: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    im = axes[0].imshow(r["baseline"]["group_acc"], vmin=0, vmax=1, cmap="viridis")
    axes[0].set_xticks(range(3), r["shapes"])
    axes[0].set_yticks(range(3), r["shapes"])
    axes[0].set_xlabel("background colour of ...")
    axes[0].set_ylabel("object shape")
    axes[0].set_title("group accuracy, no ablation", fontsize=9)
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    axes[1].imshow(r["cue_score"], cmap="coolwarm", aspect="auto")
    axes[1].set_xlabel("head")
    axes[1].set_ylabel("layer")
    axes[1].set_title("cue score per head", fontsize=9)
    ks = [a["k"] for a in r["ablations"]]
    axes[2].plot(ks, [a["cue"]["worst_group"] for a in r["ablations"]], "o-", color="tab:red", label="cue heads: worst group")
    axes[2].plot(ks, [a["random_mean_worst_group"] for a in r["ablations"]], "^-", color="tab:gray", label="random heads: worst group")
    axes[2].plot(ks, [a["cue"]["acc"] for a in r["ablations"]], "o--", color="tab:red", alpha=0.5, label="cue heads: acc")
    axes[2].plot(ks, [a["random_mean_acc"] for a in r["ablations"]], "^--", color="tab:gray", alpha=0.5, label="random heads: acc")
    axes[2].axhline(r["baseline"]["worst_group"], color="black", lw=0.8, ls="--", label="no ablation: worst group")
    axes[2].set_xlabel("k heads mean-ablated")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].legend(fontsize=6)
    return _save(fig, path, "Spurious background cue: worst-group accuracy and the heads that carry it")


def pruning_md(r: dict) -> str:
    lines = ["# Head pruning (top-k / bottom-k / random-k by concept-consistency score)", "",
             "| variant | scorer | k | top-k acc (%) | bottom-k acc (%) | random-k acc (%, mean ± std) | no pruning (%) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for v, p in r.items():
        for name, c in p["curves"].items():
            for i, k in enumerate(p["ks"]):
                rnd = c["random"][i]
                lines.append(f"| {v} | {name} | {k} | {_f(c['top'][i]['acc'], True)} | {_f(c['bottom'][i]['acc'], True)} | "
                             f"{_f(rnd['acc'], True)} ± {_f(rnd['std'], True)} | {_f(p['baseline'][name]['acc'], True)} |")
    return "\n".join(lines) + "\n"


def pruning_png(r: dict, path: Path) -> Path:
    panels = [(v, name) for v, p in r.items() for name in p["curves"]]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.4 * max(1, len(panels)), 3.4), squeeze=False)
    for ax, (v, name) in zip(axes[0], panels):
        p = r[v]
        for kind, color in (("top", "tab:red"), ("bottom", "tab:blue"), ("random", "tab:gray")):
            pts = p["curves"][name][kind]
            ax.errorbar([q["k"] for q in pts], [q["acc"] for q in pts], yerr=[q["std"] for q in pts], marker="o",
                        color=color, capsize=3, label=f"{kind}-k")
        ax.axhline(p["baseline"][name]["acc"], color="black", lw=0.8, ls="--", label="no pruning")
        ax.set_title(f"{v}: {name}", fontsize=9)
        ax.set_xlabel("k heads mean-ablated")
        ax.set_ylabel(f"{name} MCQ accuracy")
        ax.legend(fontsize=7)
    return _save(fig, path, "Pruning heads ranked by concept consistency")


def segmentation_md(r: dict) -> str:
    lines = ["# Zero-shot segmentation from the per-patch decomposition", "",
             "| variant | images | mIoU (decomposition) | mIoU (centre box) | object area (%) |", "|---|---:|---:|---:|---:|"]
    for v, s in r.items():
        lines.append(f"| {v} | {s['n']} | {s['miou']:.3f} ± {s['miou_se']:.3f} | {s['centre_box_miou']:.3f} ± "
                     f"{s['centre_box_miou_se']:.3f} (side {s['box']:g}) | {_f(s['foreground_fraction'], True)} |")
    return "\n".join(lines) + "\n" + "\n(± one standard error over images)\n"


def segmentation_png(r: dict, path: Path) -> Path:
    v, s = next(iter(r.items()))
    n = len(s["examples"]["maps"])
    fig, axes = plt.subplots(2, n + 1, figsize=(1.8 * (n + 1), 3.8), squeeze=False)
    axes[0][0].imshow(s["mean_map"], cmap="magma")
    axes[0][0].set_title("mean map", fontsize=7)
    axes[1][0].axis("off")
    for i in range(n):
        axes[0][i + 1].imshow(s["examples"]["maps"][i], cmap="magma")
        axes[0][i + 1].set_title(s["examples"]["captions"][i], fontsize=6)
        axes[1][i + 1].imshow(s["examples"]["gt"][i], cmap="gray")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path, f"{v}: per-patch caption score (top) and object mask (bottom); mIoU {s['miou']:.3f}")


MARKDOWN: dict[str, Callable[[dict], str]] = {"center_bias": center_bias_md, "mitigations": mitigations_md,
                                               "spurious": spurious_md, "pruning": pruning_md, "segmentation": segmentation_md}
FIGURES: dict[str, Callable[[dict, Path], Path]] = {"center_bias": center_bias_png, "mitigations": mitigations_png,
                                                    "spurious": spurious_png, "pruning": pruning_png, "segmentation": segmentation_png}


def write_experiment(name: str, result: dict, meta: dict, out_dir: str | Path, wandb_run: Any = None) -> dict[str, str]:
    """``<name>.json`` (``{"meta", "result"}``), ``<name>.png`` and ``<name>.md`` from the JSON's own
    numbers; logged to ``wandb_run`` (image, Markdown) when given."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = json.loads(json.dumps({"meta": meta, "result": result}))
    files = {"json": str(atomic_write_json(out / f"{name}.json", doc))}
    files["png"] = str(FIGURES[name](doc["result"], out / f"{name}.png"))
    md = MARKDOWN[name](doc["result"]) + f"\nRerun: `{meta.get('command', '')}`\n"
    files["md"] = str(atomic_write_text(out / f"{name}.md", md))
    if wandb_run is not None:
        import wandb

        wandb_run.log({f"controlled/{name}/figure": wandb.Image(files["png"]),
                       f"controlled/{name}/table": wandb.Html(f"<pre>{md}</pre>")})
    return files
