"""Benchmark evaluation: WhatsUp (Controlled-A/B, COCO/GQA-spatial) and NegBench MCQ files.

``run_benchmark`` scores every row of the benchmark's own annotation files with

* the DCSM head of a trained module (``dcsm``),
* the plain CLIP cosine of the *same* frozen encoder (``clip``), from the same forward pass:
  each image is encoded once for all its options and all options are scored in one batch,
* any further open_clip baselines (``"MODEL:PRETRAINED"`` or ``"MODEL:/path/to/ckpt.pt"``),
  scored by their own pooled cosine with their own image transform,

and reports accuracy per subset and per group (WhatsUp: preposition; NegBench: question type)
plus WhatsUp Controlled-A/B pair and set accuracy (``dcsm.benchmark_metrics.mcq_metrics``).

Outputs, all written atomically: a metrics JSON in the CLIP_benchmark spirit (``model``,
``pretrained``, ``dataset``, ``task``, ``metrics`` ...), a Markdown table next to it (same
name, ``.md``) and, with ``logger.kind=wandb`` (offline by default), a W&B run with the metrics
and a table of DCSM failure examples and their heatmaps. The prompt style used is written into
every output. Rows whose image is not found are reported with their paths and counted; the
other rows are scored.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import __version__
from .benchmark_metrics import mcq_metrics
from .data.benchmarks import MCQItem, load_benchmark, missing_images
from .encoders import EncoderSpec, FrozenCLIP
from .evaluation import clip_scores, dcsm_scores
from .features import collate_mcq, encode_batch
from .io import atomic_write_json, atomic_write_text
from .prompts import PROMPT_STYLES, REFERENCE_BENCHMARKS, apply_prompt_style

__all__ = [
    "BENCHMARKS",
    "DCSM_SCORER",
    "CLIP_SCORER",
    "BaselineSpec",
    "BenchmarkDataset",
    "parse_baseline",
    "load_items",
    "run_benchmark",
    "run_benchmark_from_config",
    "format_benchmark_table",
    "spatial_heatmap",
    "render_heatmap",
]

log = logging.getLogger(__name__)

#: Benchmark names accepted by :func:`run_benchmark`. ``whatsup`` also takes COCO/GQA-spatial
#: files (recognised by their rows being lists); ``whatsup_qa`` takes those only.
BENCHMARKS = ("whatsup", "whatsup_qa", "negbench")
DCSM_SCORER = "dcsm"
CLIP_SCORER = "clip"
TASK = "multiple_choice"
LANGUAGE = "en"
#: ``pretrained`` values of a baseline spec meaning random init.
RANDOM_INIT_TAGS = ("none", "null", "")
#: Text rows kept by baseline encoders (only their pooled embeddings are used).
BASELINE_MAX_TOKENS = 77
MISSING_SHOWN_IN_LOG = 10
MISSING_SHOWN_IN_TABLE = 20
HEATMAP_SIZE = 224
HEATMAP_ALPHA = 0.55
SCORE_DECIMALS = 4
WANDB_DEFAULT_MODE = "offline"
WANDB_DEFAULT_PROJECT = "dcsm"


# ---------------------------------------------------------------------------------------------
# items and dataset
# ---------------------------------------------------------------------------------------------


def _is_qa_file(path: Path) -> bool:
    """True if a WhatsUp JSON holds COCO/GQA-spatial rows (lists), not controlled rows (dicts)."""
    if path.suffix.lower() != ".json":
        return False
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False  # let the controlled loader report the problem with its own message
    return isinstance(data, list) and bool(data) and isinstance(data[0], list)


def load_items(benchmark: str, annotation_files: Sequence[str | Path], image_root: str | Path | None) -> list[MCQItem]:
    """Items of every annotation file, in file order then row order.

    ``benchmark="whatsup"`` loads Controlled-A/B files and, recognised by their content,
    COCO/GQA-spatial files; ``"whatsup_qa"`` and ``"negbench"`` use their own loader.

    Raises:
        ValueError: unknown benchmark, no files, or a file that does not exist.
        dcsm.data.benchmarks.BenchmarkFormatError: a file in the wrong format (names the row).
    """
    name = str(benchmark).lower()
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}. Fix: eval.benchmark=one of {', '.join(BENCHMARKS)} (or synthetic).")
    files = [Path(f) for f in (annotation_files or [])]
    if not files:
        raise ValueError(
            f"no annotation files for benchmark '{name}'. Fix: eval.annotation_files=[path/to/file, ...] "
            "(the benchmark's own JSON/CSV files, unchanged)."
        )
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise ValueError(f"annotation file(s) not found: {absent}. Fix: check eval.annotation_files.")
    items: list[MCQItem] = []
    for f in files:
        loader = "whatsup_qa" if name == "whatsup" and _is_qa_file(f) else name
        items.extend(load_benchmark(loader, f, image_root))
    return items


def _prompt_benchmark(item: MCQItem, benchmark: str) -> str:
    """The name whose reference-prompt rules apply to ``item``: its subset if known, else the family."""
    if item.subset.lower() in REFERENCE_BENCHMARKS:
        return item.subset
    return benchmark


def styled_captions(item: MCQItem, prompt_style: str, benchmark: str) -> list[str]:
    """The item's options as the prompt style presents them."""
    target = _prompt_benchmark(item, benchmark)
    return [apply_prompt_style(c, prompt_style, target) for c in item.captions]


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as err:  # corrupt or unreadable file: name it
        raise OSError(f"cannot read image '{path}': {type(err).__name__}: {err}. Fix: replace or remove the file.") from err


class BenchmarkDataset(Dataset):
    """Raw multiple-choice samples of the benchmark items whose image was found.

    Items without an image are excluded up front; their raw paths are in :attr:`missing`.

    Args:
        items: benchmark items (e.g. from :func:`load_items`), in report order.
        preprocess: the encoder's image transform (PIL RGB -> tensor).
        prompt_style: "raw" or "reference" (``dcsm.prompts``).
        benchmark: benchmark family, for items whose subset has no prompt rules of its own.

    Each sample is ``{"images": tensor, "captions": [K prompt-styled options], "label": int,
    "item_index": index into items}``.
    """

    def __init__(
        self,
        items: Sequence[MCQItem],
        preprocess: Callable[[Image.Image], torch.Tensor],
        prompt_style: str = "raw",
        benchmark: str = "whatsup",
    ) -> None:
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"unknown prompt style {prompt_style!r}. Fix: eval.prompt_style=one of {PROMPT_STYLES}.")
        self.all_items = list(items)
        self.preprocess = preprocess
        self.prompt_style = prompt_style
        self.benchmark = benchmark
        self.indices = [i for i, it in enumerate(self.all_items) if it.image_path is not None]
        self.items = [self.all_items[i] for i in self.indices]
        self.missing = missing_images(self.all_items)
        self.captions = [styled_captions(it, prompt_style, benchmark) for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        return {
            "images": self.preprocess(_open_rgb(item.image_path)),
            "captions": list(self.captions[i]),
            "label": int(item.label),
            "item_index": self.indices[i],
        }

    def batches(self, batch_size: int) -> list[list[int]]:
        """Consecutive index batches of at most ``batch_size``, never mixing option counts
        (WhatsUp controlled rows have 4 options, COCO/GQA rows 2)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}. Fix: eval.batch_size=64.")
        out: list[list[int]] = []
        cur: list[int] = []
        k_cur = None
        for i, caps in enumerate(self.captions):
            if cur and (len(cur) >= batch_size or len(caps) != k_cur):
                out.append(cur)
                cur = []
            cur.append(i)
            k_cur = len(caps)
        if cur:
            out.append(cur)
        return out

    def loader(self, batch_size: int, num_workers: int = 0) -> DataLoader:
        return DataLoader(
            self, batch_sampler=self.batches(batch_size), num_workers=num_workers, collate_fn=collate_mcq,
            persistent_workers=False,
        )


# ---------------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineSpec:
    """An extra open_clip baseline: ``name`` (metrics key), model name and pretrained tag/path."""

    name: str
    model: str
    pretrained: str | None

    def encoder_spec(self) -> EncoderSpec:
        return EncoderSpec(model=self.model, pretrained=self.pretrained, max_tokens=BASELINE_MAX_TOKENS, keep_cls=False)


def parse_baseline(spec: str) -> BaselineSpec:
    """``"MODEL:PRETRAINED"`` -> BaselineSpec. Only the first ':' splits, so the pretrained part
    may be a path holding ':'; ``none``/``null`` (any case) or nothing after ':' = random init.

    Raises:
        ValueError: no ':' or an empty model name.
    """
    text = str(spec).strip()
    model, sep, pretrained = text.partition(":")
    model, pretrained = model.strip(), pretrained.strip()
    if not sep or not model:
        raise ValueError(
            f"baseline {spec!r} is not of the form MODEL:PRETRAINED. Fix: e.g. 'ViT-B-32:openai', "
            "'ViT-B-16:/path/to/ckpt.pt' or 'ViT-B-32:none' (random init)."
        )
    tag = None if pretrained.lower() in RANDOM_INIT_TAGS else pretrained
    return BaselineSpec(name=f"{model}:{pretrained if tag is not None else 'none'}", model=model, pretrained=tag)


# ---------------------------------------------------------------------------------------------
# heatmaps
# ---------------------------------------------------------------------------------------------


def spatial_heatmap(
    dcsm_map: torch.Tensor, mask: torch.Tensor, grid_size: Sequence[int], keep_cls: bool, functional: torch.Tensor | None = None
) -> np.ndarray:
    """One caption's map ``(L, P)`` -> ``(gh, gw)`` patch-grid heatmap.

    The mean over the caption's real token rows (functional-word rows left out when
    ``functional`` marks them and others remain); column 0 (CLS) is dropped when ``keep_cls``.
    """
    m = dcsm_map.detach().float().cpu()
    if keep_cls:
        m = m[:, 1:]
    rows = mask.detach().cpu().bool().clone()
    if functional is not None:
        plain = rows & ~functional.detach().cpu().bool()
        if plain.any():
            rows = plain
    sel = m[rows] if rows.any() else m
    gh, gw = int(grid_size[0]), int(grid_size[1])
    if sel.shape[-1] != gh * gw:
        raise ValueError(f"map has {sel.shape[-1]} patch columns, expected {gh}x{gw}={gh * gw}")
    return sel.mean(dim=0).reshape(gh, gw).numpy()


def _colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB; matplotlib's viridis if installed, else a built-in ramp."""
    try:
        from matplotlib import colormaps  # optional: not a dependency

        return (colormaps["viridis"](values)[..., :3] * 255).astype(np.uint8)
    except Exception:
        stops = np.array([[48, 18, 59], [40, 120, 240], [40, 200, 130], [250, 220, 40], [220, 40, 20]], dtype=float)
        pos = values * (len(stops) - 1)
        lo = np.clip(np.floor(pos).astype(int), 0, len(stops) - 2)
        frac = (pos - lo)[..., None]
        return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).round().astype(np.uint8)


def render_heatmap(heatmap: np.ndarray, image: Image.Image | None = None, size: int = HEATMAP_SIZE) -> Image.Image:
    """A ``(gh, gw)`` heatmap as an RGB PIL image (min-max scaled, nearest-upsampled), blended
    over ``image`` (resized to the same size) when given."""
    h = np.asarray(heatmap, dtype=float)
    span = float(h.max() - h.min())
    norm = (h - h.min()) / span if span > 0 and math.isfinite(span) else np.zeros_like(h)
    heat = Image.fromarray(_colormap(norm)).resize((size, size), Image.NEAREST)
    if image is None:
        return heat
    return Image.blend(image.convert("RGB").resize((size, size), Image.BILINEAR), heat, HEATMAP_ALPHA)


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(float(v), SCORE_DECIMALS) for v in values]


@torch.no_grad()
def _score_dcsm_and_clip(
    module: Any, dataset: BenchmarkDataset, batch_size: int, num_workers: int, max_failures: int, progress: bool
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], list[dict[str, Any]]]:
    """One pass: DCSM and same-encoder CLIP scores per item index, and the first failures
    (DCSM wrong) with their heatmaps for the correct and the predicted caption."""
    head, encoder = module.head, module.encoder
    spec = encoder.spec
    dcsm_out: dict[int, torch.Tensor] = {}
    clip_out: dict[int, torch.Tensor] = {}
    failures: list[dict[str, Any]] = []
    was_training = head.training
    head.eval()
    try:
        loader = dataset.loader(batch_size, num_workers)
        for batch in tqdm(loader, desc=f"{dataset.benchmark}: dcsm+clip", unit="batch", disable=not progress):
            f = encode_batch(encoder, batch)
            dcsm = dcsm_scores(head, f).float()
            clip = clip_scores(f).float()
            label = f["label"]
            pred = dcsm.argmax(dim=1)
            for r, idx in enumerate(batch["item_index"].tolist()):
                dcsm_out[idx] = dcsm[r].cpu()
                clip_out[idx] = clip[r].cpu()
            wrong = (pred != label).nonzero().flatten().tolist()
            for r in wrong:
                if len(failures) >= max_failures:
                    break
                pair = torch.tensor([int(label[r]), int(pred[r])], device=dcsm.device)
                tok, msk, ids = f["tokens"][r : r + 1, pair], f["token_mask"][r : r + 1, pair], f["token_ids"][r : r + 1, pair]
                maps = head.maps(f["patches"][r : r + 1].float(), tok.float(), msk, ids)[0]  # (2, L, P)
                fr = head.functional_rows.index(ids[0]) >= 0 if head.map_cfg.functional_rows else None
                heat = [
                    spatial_heatmap(maps[j], msk[0, j], encoder.grid_size, spec.keep_cls, None if fr is None else fr[j])
                    for j in range(2)
                ]
                failures.append({"item_index": int(batch["item_index"][r]), "heatmaps": heat})
    finally:
        head.train(was_training)
    return dcsm_out, clip_out, failures


@torch.no_grad()
def _score_baseline(
    encoder: FrozenCLIP, dataset: BenchmarkDataset, batch_size: int, num_workers: int, name: str, progress: bool
) -> dict[int, torch.Tensor]:
    """Pooled-cosine scores of an extra baseline encoder per item index."""
    out: dict[int, torch.Tensor] = {}
    for batch in tqdm(dataset.loader(batch_size, num_workers), desc=f"{dataset.benchmark}: {name}", unit="batch", disable=not progress):
        scores = clip_scores(encode_batch(encoder, batch)).float().cpu()
        for r, idx in enumerate(batch["item_index"].tolist()):
            out[idx] = scores[r]
    return out


def _nan_to_none(obj: Any) -> Any:
    """Strict JSON: NaN/inf (e.g. accuracy of an empty subset) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * float(value):.1f}"


def format_benchmark_table(report: dict[str, Any]) -> str:
    """Markdown: a header naming model, checkpoint and prompt style, then one row per subset,
    per group (preposition / question type), pair and set accuracy, and overall; one accuracy
    column (%) per scorer; then the missing images."""
    metrics: dict[str, Any] = report["metrics"]
    scorers = list(report.get("scorers") or metrics)
    first = metrics[scorers[0]]
    missing = report.get("missing_images", {"count": 0, "paths": []})
    lines = [
        f"# {report['dataset']}: multiple-choice accuracy (%)",
        "",
        f"- model: `{report['model']}` pretrained: `{report['pretrained']}`",
        f"- checkpoint: `{report.get('checkpoint')}`",
        f"- prompt style: `{report['prompt_style']}`",
        f"- annotation files: {', '.join(f'`{f}`' for f in report.get('annotation_files', []))}",
        f"- scored {report['n_scored']} of {report['n_items']} items; missing images: {missing['count']}",
        "",
        "| subset | metric | n | " + " | ".join(scorers) + " |",
        "|---|---|---:|" + "---:|" * len(scorers),
    ]

    def row(subset: str, metric: str, n: Any, get: Callable[[dict[str, Any]], Any]) -> None:
        vals = []
        for s in scorers:
            try:
                vals.append(_pct(get(metrics[s])))
            except (KeyError, TypeError):
                vals.append("n/a")
        lines.append(f"| {subset} | {metric} | {n} | " + " | ".join(vals) + " |")

    for subset, sub in first["per_subset"].items():
        row(subset, "accuracy", sub["n"], lambda m, s=subset: m["per_subset"][s]["accuracy"])
        for group, g in first.get("per_group", {}).get(subset, {}).items():
            row(subset, group, g["n"], lambda m, s=subset, gr=group: m["per_group"][s][gr]["accuracy"])
        if subset in first.get("pair_accuracy", {}):
            row(subset, "pair accuracy", sub["n"], lambda m, s=subset: m["pair_accuracy"][s])
            row(subset, "set accuracy", sub["n"], lambda m, s=subset: m["set_accuracy"][s])
    row("all", "accuracy", first["n"], lambda m: m["accuracy"])
    if missing["count"]:
        lines += ["", f"Missing images ({missing['count']}):", ""]
        lines += [f"- `{p}`" for p in missing["paths"][:MISSING_SHOWN_IN_TABLE]]
        if missing["count"] > MISSING_SHOWN_IN_TABLE:
            lines.append(f"- ... {missing['count'] - MISSING_SHOWN_IN_TABLE} more (all listed in the metrics JSON)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# W&B
# ---------------------------------------------------------------------------------------------


def _flatten(prefix: str, obj: Any, out: dict[str, float]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and obj is not None:
        out[prefix] = obj


def _log_wandb(report: dict[str, Any], failures: list[dict[str, Any]], items: list[MCQItem], logger_cfg: dict, output: Path) -> dict[str, Any]:
    """Metrics as summary, the Markdown rows as a table, and the failure table with images."""
    import wandb

    mode = logger_cfg.get("mode") or WANDB_DEFAULT_MODE
    wandb_dir = output.parent
    wandb_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=logger_cfg.get("project") or WANDB_DEFAULT_PROJECT,
        name=logger_cfg.get("name") or f"eval_{report['dataset']}_{report['prompt_style']}",
        mode=mode,
        dir=str(wandb_dir),
        job_type="evaluate",
        config={k: report[k] for k in ("model", "pretrained", "dataset", "prompt_style", "checkpoint", "annotation_files", "image_root")},
    )
    try:
        summary: dict[str, float] = {}
        _flatten("", report["metrics"], summary)
        summary.update(n_items=report["n_items"], n_scored=report["n_scored"], missing_images=report["missing_images"]["count"])
        run.summary.update(summary)
        run.summary["prompt_style"] = report["prompt_style"]
        columns = [
            "image", "source", "row", "subset", "group", "prompt_style", "correct caption", "predicted caption",
            "dcsm scores", "clip scores", "dcsm map (correct)", "dcsm map (predicted)",
        ]
        table = wandb.Table(columns=columns)
        for fail, rec in zip(failures, report["failures"]):
            item = items[fail["item_index"]]
            img = _open_rgb(item.image_path)
            table.add_data(
                wandb.Image(img.resize((HEATMAP_SIZE, HEATMAP_SIZE))), item.source, item.row, item.subset, item.group,
                report["prompt_style"], rec["correct_caption"], rec["predicted_caption"],
                json.dumps(rec["dcsm_scores"]), json.dumps(rec["clip_scores"]),
                wandb.Image(render_heatmap(fail["heatmaps"][0], img)), wandb.Image(render_heatmap(fail["heatmaps"][1], img)),
            )
        run.log({"failures": table, "metrics_markdown": wandb.Html(f"<pre>{format_benchmark_table(report)}</pre>")})
        info = {"mode": mode, "dir": str(Path(run.dir).parent), "run_id": run.id}
    finally:
        run.finish()
    return info


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------


def run_benchmark(
    module: Any,
    benchmark: str,
    annotation_files: Sequence[str | Path],
    image_root: str | Path | None,
    *,
    prompt_style: str = "raw",
    baselines: Sequence[str] = (),
    batch_size: int = 64,
    num_workers: int = 0,
    max_failures: int = 32,
    output: str | Path,
    logger_cfg: dict | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Score a benchmark with the DCSM head, its encoder's CLIP cosine and extra baselines.

    Args:
        module: a ``DCSMModule`` (``.encoder`` FrozenCLIP, ``.head`` DCSMHead), e.g. from
            ``dcsm.lit.load_module``.
        benchmark: "whatsup" (Controlled-A/B and COCO/GQA-spatial files), "whatsup_qa" or
            "negbench".
        annotation_files: the benchmark's own JSON/CSV files, unchanged.
        image_root: folder the files' image paths resolve against.
        prompt_style: "raw" or "reference"; written into every output.
        baselines: extra open_clip baselines, ``"MODEL:PRETRAINED"`` or ``"MODEL:/path.pt"``.
        batch_size, num_workers: data loading.
        max_failures: how many DCSM failures (first in file order) go into the JSON and W&B.
        output: metrics JSON path; the Markdown table is written next to it as ``.md``.
        logger_cfg: the config's ``logger`` section; kind ``wandb`` logs a run (mode from the
            config, offline by default) under ``output``'s folder; other kinds log nothing more.
        progress: show tqdm progress bars.
        checkpoint: the checkpoint path, recorded in the outputs.
        device: move the module there first; None keeps it where it is.

    Returns:
        The report written to ``output`` (see module doc); ``metrics`` maps every scorer name
        (``dcsm``, ``clip``, then each baseline's ``MODEL:PRETRAINED``) to ``mcq_metrics``.
    """
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {prompt_style!r}. Fix: eval.prompt_style=one of {PROMPT_STYLES}.")
    if image_root is None:
        raise ValueError("no image root given. Fix: eval.image_root=<folder the annotation files' image paths resolve against>.")
    if not Path(image_root).is_dir():
        raise ValueError(f"image root '{image_root}' is not a folder. Fix: check eval.image_root.")
    if max_failures < 0:
        raise ValueError(f"max_failures must be >= 0, got {max_failures}.")
    output = Path(output)
    benchmark = str(benchmark).lower()
    parsed = [parse_baseline(b) for b in (baselines or [])]
    names = [DCSM_SCORER, CLIP_SCORER] + [b.name for b in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"baseline(s) {dupes} given twice. Fix: list each baseline once in eval.baselines.")
    if device is not None:
        module.to(device)

    items = load_items(benchmark, annotation_files, image_root)
    dataset = BenchmarkDataset(items, module.encoder.preprocess, prompt_style, benchmark)
    if dataset.missing:
        shown = "\n  ".join(dataset.missing[:MISSING_SHOWN_IN_LOG])
        more = len(dataset.missing) - MISSING_SHOWN_IN_LOG
        log.warning(
            "%d of %d images not found under image root '%s'; their rows are skipped and listed in %s:\n  %s%s",
            len(dataset.missing), len(items), image_root, output, shown, f"\n  ... {more} more" if more > 0 else "",
        )
    if len(dataset) == 0:
        log.warning("no image of %s was found under '%s': nothing scored. Fix: check eval.image_root.", benchmark, image_root)

    scores: dict[str, dict[int, torch.Tensor]] = {}
    failures: list[dict[str, Any]] = []
    if len(dataset):
        scores[DCSM_SCORER], scores[CLIP_SCORER], failures = _score_dcsm_and_clip(
            module, dataset, batch_size, num_workers, max_failures, progress
        )
        for b in parsed:
            enc = FrozenCLIP(b.encoder_spec()).to(module.encoder.device)
            bds = BenchmarkDataset(items, enc.preprocess, prompt_style, benchmark)
            scores[b.name] = _score_baseline(enc, bds, batch_size, num_workers, b.name, progress)
            del enc
    else:
        scores = {n: {} for n in names}

    scored = dataset.items
    metrics = {
        n: mcq_metrics(scored, [int(scores[n][i].argmax()) for i in dataset.indices]) for n in names
    }

    failure_records = []
    for fail in failures:
        idx = fail["item_index"]
        item = items[idx]
        caps = styled_captions(item, prompt_style, benchmark)
        pred = int(scores[DCSM_SCORER][idx].argmax())
        failure_records.append({
            "source": item.source, "row": item.row, "subset": item.subset, "group": item.group,
            "raw_image_path": item.raw_image_path, "image_path": str(item.image_path),
            "label": item.label, "prediction": pred, "clip_prediction": int(scores[CLIP_SCORER][idx].argmax()),
            "correct_caption": caps[item.label], "predicted_caption": caps[pred], "captions": caps,
            "dcsm_scores": _rounded(scores[DCSM_SCORER][idx]), "clip_scores": _rounded(scores[CLIP_SCORER][idx]),
        })

    spec = module.encoder.spec
    report: dict[str, Any] = {
        "model": spec.model,
        "pretrained": spec.pretrained,
        "dataset": benchmark,
        "task": TASK,
        "language": LANGUAGE,
        "prompt_style": prompt_style,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "annotation_files": [str(f) for f in annotation_files],
        "image_root": str(image_root),
        "subsets": list(dict.fromkeys(it.subset for it in items)),
        "n_items": len(items),
        "n_scored": len(dataset),
        "missing_images": {"count": len(dataset.missing), "paths": list(dataset.missing)},
        "scorers": names,
        "baselines": [{"name": b.name, "model": b.model, "pretrained": b.pretrained} for b in parsed],
        "encoder": spec.to_dict(),
        "metrics": metrics,
        "failures": failure_records,
        "dcsm_version": __version__,
        "output": str(output),
        "markdown": str(output.with_suffix(".md")),
    }
    report = _nan_to_none(report)

    # results first, so that a W&B problem never loses them; then the run, recorded in the JSON
    atomic_write_json(output, report)
    atomic_write_text(output.with_suffix(".md"), format_benchmark_table(report) + "\n")
    if logger_cfg and logger_cfg.get("kind") == "wandb":
        report["wandb"] = _log_wandb(report, failures, items, logger_cfg, output)
        atomic_write_json(output, report)
    return report


def run_benchmark_from_config(cfg: dict, module: Any | None = None, progress: bool = True) -> dict[str, Any]:
    """``evaluate.py eval.benchmark=whatsup|whatsup_qa|negbench ...``: load ``eval.checkpoint``
    (unless a module is given), run :func:`run_benchmark` with the ``eval`` and ``logger``
    config sections; output defaults to ``<checkpoint dir>/../eval_<benchmark>_<style>.json``."""
    from .lit import load_module

    ev = cfg["eval"]
    ckpt = ev.get("checkpoint")
    if module is None:
        if not ckpt:
            raise ValueError("evaluate.py needs eval.checkpoint=<path to a .ckpt written by train.py>.")
        module = load_module(str(ckpt))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if ev.get("output"):
        out = Path(ev["output"])
    elif ckpt:
        out = Path(ckpt).resolve().parent.parent / f"eval_{ev['benchmark']}_{ev['prompt_style']}.json"
    else:
        out = Path(cfg.get("run_dir", ".")) / f"eval_{ev['benchmark']}_{ev['prompt_style']}.json"
    return run_benchmark(
        module,
        ev["benchmark"],
        list(ev.get("annotation_files") or []),
        ev.get("image_root"),
        prompt_style=ev.get("prompt_style", "raw"),
        baselines=list(ev.get("baselines") or []),
        batch_size=int(ev.get("batch_size", 64)),
        num_workers=int(ev.get("num_workers", 0)),
        max_failures=int(ev.get("max_failures", 32)),
        output=out,
        logger_cfg=cfg.get("logger"),
        progress=progress,
        checkpoint=ckpt,
        device=device,
    )
