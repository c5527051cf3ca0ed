"""The README's format-transfer / held-out-template tables, over several training seeds.

    python benchmarks/format_transfer_table.py RUN_DIR [RUN_DIR ...] [--transfer eval_transfer.json]

Each RUN_DIR is a ``train.py --config configs/smoke.yaml seed=S run_dir=RUN_DIR`` run (its
``metrics.json``: the synthetic splits) that was also scored on the format-transfer files with
``evaluate.py eval.benchmark=all eval.data_root=FT eval.output=RUN_DIR/eval_transfer.json``. Prints
Markdown tables: DCSM and CLIP accuracy (%) as mean ± standard deviation over the runs (sample
std; n = 1: no spread), per synthetic split and category, per format-transfer file and per
question type / relation (WhatsUp: also pair and set accuracy), and DCSM - CLIP of the means.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SPLITS = ("test", "shifted", "heldout", "heldout_templates")
CATEGORIES = ("binding", "spatial", "negation", "all")
LABELS = {
    "controlled_a": "WhatsUp A (`controlled_images_dataset.json`)",
    "controlled_b": "WhatsUp B (`controlled_clevr_dataset.json`)",
    "coco_qa_two": "COCO-spatial two (`coco_qa_two_obj.json`)",
    "gqa_qa_two": "GQA-spatial two (`vg_qa_two_obj.json`)",
    "negbench_coco": "NegBench (`COCO_val_mcq_llama3.1_rephrased.csv`)",
    "clevr_bind_val": "CLEVR-bind (`two_object/val.csv`)",
}


def _fmt(values: list[float]) -> str:
    m = 100 * statistics.fmean(values)
    return f"{m:.1f}" if len(values) < 2 else f"{m:.1f} ± {100 * statistics.stdev(values):.1f}"


def _row(name: str, n: int, dcsm: list[float], clip: list[float]) -> str:
    diff = 100 * (statistics.fmean(dcsm) - statistics.fmean(clip))
    return f"| {name} | {n} | {_fmt(dcsm)} | {_fmt(clip)} | {diff:+.1f} |"


def synthetic_table(runs: list[Path]) -> list[str]:
    reports = [json.loads((r / "metrics.json").read_text())["metrics"] for r in runs]
    lines = ["| split | category | n | DCSM acc (%) | CLIP acc (%) | DCSM - CLIP |", "|---|---|---:|---:|---:|---:|"]
    for split in SPLITS:
        if split not in reports[0]:
            continue
        for cat in CATEGORIES:
            if cat not in reports[0][split]["dcsm"]:
                continue
            d = [rep[split]["dcsm"][cat] for rep in reports]
            c = [rep[split]["clip"][cat] for rep in reports]
            lines.append(_row(f"{split} | {cat}", reports[0][split]["n"][cat], d, c))
    return lines


def transfer_table(runs: list[Path], name: str) -> list[str]:
    reports = [json.loads((r / name).read_text())["metrics"] for r in runs]
    lines = ["| file | group | n | DCSM acc (%) | CLIP acc (%) | DCSM - CLIP |", "|---|---|---:|---:|---:|---:|"]
    for subset in reports[0]["dcsm"]:
        label = LABELS.get(subset, f"SugarCrepe {subset.removeprefix('sugarcrepe_')}" if subset.startswith("sugar") else subset)
        rep = [(r["dcsm"][subset], r["clip"][subset]) for r in reports]
        lines.append(_row(f"**{label}** | all", rep[0][0]["n"], [d["accuracy"] for d, _ in rep],
                          [c["accuracy"] for _, c in rep]))
        groups = rep[0][0]["per_group"].get(subset, {})
        if len(groups) > 1:
            for g in sorted(groups):
                lines.append(_row(f" | {g}", groups[g]["n"], [d["per_group"][subset][g]["accuracy"] for d, _ in rep],
                                  [c["per_group"][subset][g]["accuracy"] for _, c in rep]))
        for kind in ("pair_accuracy", "set_accuracy"):
            if subset in rep[0][0].get(kind, {}):
                lines.append(_row(f" | {kind.split('_')[0]}", rep[0][0]["n"] // 4 if kind == "set_accuracy" else
                                  rep[0][0]["n"] // 2, [d[kind][subset] for d, _ in rep], [c[kind][subset] for _, c in rep]))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--transfer", default="eval_transfer.json", help="file name of the suite report in each run dir")
    args = ap.parse_args()
    print(f"## Synthetic splits ({len(args.runs)} runs)\n")
    print("\n".join(synthetic_table(args.runs)))
    if all((r / args.transfer).is_file() for r in args.runs):
        print(f"\n## Format-transfer files ({len(args.runs)} runs)\n")
        print("\n".join(transfer_table(args.runs, args.transfer)))


if __name__ == "__main__":
    main()
