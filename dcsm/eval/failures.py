"""A benchmark's DCSM failures as the user sees them: JSON records (row, captions, both scorers'
choices and scores), PNGs beside the metrics JSON (image, heatmaps of the correct and the chosen
caption) and the W&B image list and table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..data.benchmarks.dataset import open_rgb, styled_captions
from ..data.benchmarks.items import MCQItem
from ..model.heatmaps import HEATMAP_SIZE, render_heatmap
from .metrics import NONFINITE, TIE, top_choice
from .report import CLIP_SCORER, DCSM_SCORER


SCORE_DECIMALS = 4


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(float(v), SCORE_DECIMALS) for v in values]


FAILURE_IMAGES = ("image", "correct", "predicted")  # per failure: the picture, heatmaps of the two captions


def save_failure_images(output: Path, failures: list[dict[str, Any]], items: list[MCQItem]) -> list[dict[str, str]]:
    """Each failure's image and its two heatmaps (correct, predicted caption) as PNGs in
    ``<output stem>_failures/`` beside the metrics JSON -> per failure ``{kind: path}``."""
    if not failures:
        return []
    folder = output.parent / f"{output.stem}_failures"
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for i, fail in enumerate(failures):
        item = items[fail["item_index"]]
        img = open_rgb(item)
        pictures = (img.convert("RGB").resize((HEATMAP_SIZE, HEATMAP_SIZE)), render_heatmap(fail["heatmaps"][0], img),
                    render_heatmap(fail["heatmaps"][1], img))
        paths = {}
        for kind, pic in zip(FAILURE_IMAGES, pictures):
            path = folder / f"{i:03d}_row{item.row}_{kind}.png"
            pic.save(path, format="PNG")
            paths[kind] = str(path)
        saved.append(paths)
    return saved


def wandb_failures(report: dict[str, Any]) -> Any:
    """``extra`` for :func:`dcsm.eval.report.log_wandb`: the failure PNGs as an image list (W&B writes
    each as a media file; image cells inside a table are not written in offline runs) and the
    failure table (captions, scores, the same images)."""

    def extra(wandb: Any) -> dict[str, Any]:
        columns = [
            "image", "source", "row", "subset", "group", "prompt_style", "correct caption", "predicted caption",
            "dcsm scores", "clip scores", "dcsm map (correct)", "dcsm map (predicted)",
        ]
        table = wandb.Table(columns=columns)
        gallery = []
        for rec in report["failures"]:
            files = rec["images"]
            table.add_data(
                wandb.Image(files["image"]), rec["source"], rec["row"], rec["subset"], rec["group"],
                report["prompt_style"], rec["correct_caption"], rec["predicted_caption"],
                json.dumps(rec["dcsm_scores"]), json.dumps(rec["clip_scores"]),
                wandb.Image(files["correct"]), wandb.Image(files["predicted"]),
            )
            where = f"{rec['source']} row {rec['row']}"
            gallery += [wandb.Image(files["correct"], caption=f"{where}, correct: {rec['correct_caption']}"),
                        wandb.Image(files["predicted"], caption=f"{where}, predicted: {rec['predicted_caption']}")]
        return {"failures": table, "failure_heatmaps": gallery} if gallery else {"failures": table}

    return extra


def failure_records(
    items: list[MCQItem], failures: list[dict[str, Any]], failure_files: list[dict[str, str]],
    scores: dict[str, dict[int, torch.Tensor]], prompt_style: str, benchmark: str,
) -> list[dict[str, Any]]:
    """One JSON record per DCSM failure: the row, captions, both scorers' choices and scores, its PNGs."""
    records = []
    for fail, files in zip(failures, failure_files):
        idx = fail["item_index"]
        item = items[idx]
        caps = styled_captions(item, prompt_style, benchmark)
        pred, shown = int(top_choice(scores[DCSM_SCORER][idx])), fail["shown"]
        records.append({
            "source": item.source, "row": item.row, "subset": item.subset, "group": item.group,
            "raw_image_path": item.raw_image_path, "image_path": str(item.image_path),
            "label": item.label, "prediction": pred, "clip_prediction": int(top_choice(scores[CLIP_SCORER][idx])),
            "tied": pred == TIE, "nonfinite": pred == NONFINITE,
            "correct_caption": caps[item.label], "predicted_caption": caps[shown], "captions": caps,
            "dcsm_scores": _rounded(scores[DCSM_SCORER][idx]), "clip_scores": _rounded(scores[CLIP_SCORER][idx]),
            "images": files,
        })
    return records
