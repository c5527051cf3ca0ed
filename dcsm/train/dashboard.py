"""The training dashboard: what a logged training run shows besides its scalar curves.

* :class:`DashboardCallback` (a Lightning Callback, rank zero only): at fit start the run's config
  and the encoder record go into the loggers' hyper-parameters (W&B run config, CSV
  ``hparams.yaml``); after every ``dashboard.every_n_epochs``-th validation epoch, a fixed seeded
  panel of validation examples (``dashboard.per_category`` per category) is scored by the current
  head and drawn, one PNG per category: per example the image, the patch heatmap of the correct
  and of the other shown option over the image, and the DCSM maps ``(L, P)`` of both with the
  functional rows marked in red. PNGs go to ``run_dir/panels/epoch_NNN/`` (the newest
  ``dashboard.keep_epochs`` folders kept), W&B gets them as images ``panel/<split>/<category>``.
  Examples: synthetic data, a seeded choice among the scenes of ``dashboard.split``; raw image
  shards, the first ones per category of ``data.val_shards``; cached features carry no images (no
  panel, one warning).
* :func:`log_final_table`: the final per-split, per-category table of the best checkpoint (DCSM
  and CLIP accuracy, ``n`` and every count column the metrics dict carries, e.g. ``n_tied``) as a
  W&B table ``final/metrics`` plus run summary values (``test/acc_spatial``, ``test/clip_acc``,
  ``test/n_tied_spatial`` ...), and as ``final_metrics.csv`` in the CSV logger's folder.

The "other shown option" is the best-scored option other than the correct one: the prediction
when DCSM is wrong, a tied rival on a tie (a tie counts wrong), the runner-up when DCSM is right.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from PIL import Image, ImageDraw, ImageFont

from ..model import toy_clip
from ..data.synthetic.dataset import SyntheticDataConfig, scene_dataset
from ..data.synthetic.vocab import SPLITS
from ..model.encoders import FrozenCLIP
from ..eval.loop import score_batches
from ..model.batch import collate_mcq
from ..model.heatmaps import option_maps, render_heatmap, spatial_heatmap
from ..io import atomic_write_json, atomic_write_text
from ..eval.metrics import TIE, top_choice
from ..eval.report import nan_to_none

log = logging.getLogger(__name__)

__all__ = ["DashboardConfig", "DashboardCallback", "encoder_record", "final_table", "final_summary", "log_final_table",
           "PANEL_DIR", "FINAL_TABLE_KEY", "FINAL_CSV"]

PANEL_DIR = "panels"  # under run_dir
PANEL_KEY = "panel"  # W&B image key prefix: panel/<split>/<category>
FINAL_TABLE_KEY = "final/metrics"
FINAL_CSV = "final_metrics.csv"
SCORERS = ("dcsm", "clip")  # accuracy columns of the final table; DCSM's keys carry no scorer prefix
TILE = 176  # panel tile side (px): image, heatmaps, maps
LABEL_WIDTH = 72  # px left of a map for its token labels
FONT_SIZE = 11
LINE_HEIGHT = 13  # px per text line
TITLE_LINES = 3  # lines above each tile (caption wrapped)
CAPTION_WIDTH = 30  # characters per title line
PAD = 6  # px between tiles and rows
RED = (210, 0, 0)  # functional rows
TOKEN_LABEL = 10  # characters of a token shown as a map row label
_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


@dataclass(frozen=True)
class DashboardConfig:
    """The ``dashboard:`` config section (defaults live in ``configs/default.yaml``)."""

    per_category: int
    seed: int
    split: str | None
    every_n_epochs: int
    keep_epochs: int

    @classmethod
    def from_config(cls, cfg: dict) -> "DashboardConfig":
        d = cfg["dashboard"]
        out = cls(**{k: d[k] for k in cls.__dataclass_fields__})
        for key, low in (("per_category", 0), ("every_n_epochs", 1), ("keep_epochs", 1)):
            value = getattr(out, key)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"dashboard.{key} must be an integer >= {low}, got {value!r}. Fix: dashboard.{key}={max(low, 1)}.")
        return out


def encoder_record(encoder: FrozenCLIP) -> dict[str, Any]:
    """What a run's encoder is: its spec plus the derived map shape; for the shipped toy CLIP the
    SHA-256 of its weights (from its record)."""
    rec: dict[str, Any] = {
        **encoder.spec.to_dict(), "grid_size": list(encoder.grid_size), "num_patches": encoder.num_patches,
        "embed_dim": encoder.embed_dim, "image_size": list(encoder.image_size),
    }
    if encoder.spec.model == toy_clip.TOY_MODEL and encoder.spec.pretrained == toy_clip.TOY_TAG:
        rec["weights_sha256"] = toy_clip.load_record().get("sha256")
    return rec


# ----------------------------------------------------------------------------- final table
def _is_count(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count_columns(res: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    """Every count the metrics dict has besides ``n`` -> (column, scorer or None, metrics key).
    Per-scorer counts (``{"dcsm": {cat: n} or n, "clip": ...}``, e.g. ``n_tied``) give one column
    per scorer (``n_tied``, ``clip_n_tied``); per-category counts (``{cat: n}``) and a split
    total (``n``) one column."""
    cols = []
    for key, value in res.items():
        if key in (*SCORERS, "n"):
            continue
        if isinstance(value, dict) and value and set(value) <= set(SCORERS):
            cols += [(key if s == "dcsm" else f"{s}_{key}", s, key) for s in value]
        elif (isinstance(value, dict) and value and all(_is_count(v) for v in value.values())) or _is_count(value):
            cols.append((key, None, key))
    return cols


def _cell(res: dict[str, Any], key: str, scorer: str | None, name: str) -> Any:
    """A count of ``res[key]`` (per scorer when given) for category ``name``; a bare total counts
    for ``all`` only."""
    block = res.get(key)
    if scorer is not None:
        block = block.get(scorer) if isinstance(block, dict) else None
    if isinstance(block, dict):
        return _finite(block.get(name))
    return _finite(block) if _is_count(block) and name == "all" else None


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def final_table(results: dict[str, dict[str, Any]], categories: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """Per split x category (categories, then ``all``): ``split, category, n, acc, clip_acc`` and
    the count columns the metrics dict carries (:func:`_count_columns`, e.g. ``n_tied,
    clip_n_tied``); accuracies are fractions, NaN (empty category) -> None."""
    count_cols: dict[str, tuple[str | None, str]] = {}
    for res in results.values():
        for col, scorer, key in _count_columns(res):
            count_cols.setdefault(col, (scorer, key))
    columns = ["split", "category", "n", "acc", "clip_acc", *count_cols]
    rows = []
    for split, res in results.items():
        for name in [*categories, "all"]:
            if name not in res.get("n", {}):
                continue
            row = [split, name, res["n"][name], _finite(res["dcsm"].get(name)), _finite(res["clip"].get(name))]
            row += [_cell(res, key, scorer, name) for scorer, key in count_cols.values()]
            rows.append(row)
    return columns, rows


def final_summary(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, float]:
    """Run summary values of :func:`final_table`: ``<split>/<column>`` for ``all`` and
    ``<split>/<column>_<category>`` per category (``test/acc_spatial``, ``test/clip_n_tied``);
    None cells are left out."""
    out: dict[str, float] = {}
    for row in rows:
        split, cat = row[0], row[1]
        suffix = "" if cat == "all" else f"_{cat}"
        for col, value in zip(columns[2:], row[2:]):
            if value is not None:
                out[f"{split}/{col}{suffix}"] = value
    return out


def _csv_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buf.getvalue()


def log_final_table(loggers: Sequence[Logger], results: dict[str, dict[str, Any]], categories: Sequence[str]) -> dict[str, Any]:
    """The final table to every logger: W&B table :data:`FINAL_TABLE_KEY` + run summary values,
    CSV :data:`FINAL_CSV` (atomic) in the CSV logger's folder. Returns ``{"columns", "rows",
    "summary", "csv"}`` (``csv``: the paths written)."""
    columns, rows = final_table(results, categories)
    summary = final_summary(columns, rows)
    written = []
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.log_table(FINAL_TABLE_KEY, columns=columns, data=[list(r) for r in rows])
            lg.experiment.summary.update(summary)
        elif isinstance(lg, CSVLogger):
            path = Path(lg.log_dir) / FINAL_CSV
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, _csv_text(columns, rows))
            written.append(str(path))
    return {"columns": columns, "rows": rows, "summary": summary, "csv": written}


# ----------------------------------------------------------------------------- epoch panel
@dataclass
class Panel:
    """The fixed panel examples: a raw batch (preprocessed images, captions, labels, categories)
    and, aligned with it, the PIL images and category names shown."""

    split: str
    batch: dict[str, Any]
    images: list[Image.Image]
    categories: list[str]
    indices: list[int]


def panel_indices(size: int, categories: Sequence[str], per_category: int, seed: int) -> dict[str, list[int]]:
    """Seeded choice of ``per_category`` scene indices per category out of ``size`` synthetic
    scenes (scene ``i`` has category ``categories[i % C]``, :func:`dcsm.data.synthetic.scenes.make_scene`),
    sorted; fewer when a category has fewer scenes."""
    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for c, name in enumerate(categories):
        pool = torch.arange(c, size, len(categories))
        out[name] = sorted(pool[torch.randperm(len(pool), generator=gen)[:per_category]].tolist())
    return out


def synthetic_panel(cfg: dict, split: str, dc: DashboardConfig, preprocess: Any) -> Panel:
    """The panel examples of a synthetic validation ``split`` of the run config ``cfg``."""
    if split not in SPLITS:
        raise ValueError(f"dashboard.split '{split}' is not a synthetic split. Fix: one of {list(SPLITS)}, or null "
                         "(the first of data.val_splits).")
    data = SyntheticDataConfig.from_config(cfg)
    ds = scene_dataset(data, split, preprocess)
    chosen = panel_indices(len(ds), data.categories, dc.per_category, dc.seed)
    items, images, cats, idx = [], [], [], []
    for name, indices in chosen.items():
        for i in indices:
            item = ds[i]
            if data.categories[item["category"]] != name:
                raise RuntimeError(f"synthetic scene {i} of '{split}' is not a {name} scene: dashboard.panel_indices is out of date")
            items.append(item)
            images.append(ds.scenes[i].image)
            cats.append(name)
            idx.append(i)
    return Panel(split, collate_mcq(items) if items else {}, images, cats, idx)


def shard_panel(cfg: dict, dc: DashboardConfig, preprocess: Any) -> Panel:
    """The panel examples of raw image shards (``data.source=shards``): the first
    ``dc.per_category`` samples per category of ``data.val_shards`` in file order (a fixed set;
    the stream is read once, by this process alone, apart from the training loaders)."""
    from ..data.shards.read import raw_sample_pipeline

    cats = tuple(cfg["data"]["categories"])
    stream = raw_sample_pipeline(cfg["data"]["val_shards"], None, categories=cats, shuffle_buffer=0, shuffle_shards=False,
                                 split_by_node=False, split_by_worker=False)
    picked: dict[str, list[tuple[int, dict[str, Any]]]] = {c: [] for c in cats}
    for n, sample in enumerate(stream):
        c = int(sample.get("category", -1))
        if 0 <= c < len(cats) and len(picked[cats[c]]) < dc.per_category:
            picked[cats[c]].append((n, sample))
        if all(len(v) >= dc.per_category for v in picked.values()):
            break
    chosen = [(name, n, s) for name in cats for n, s in picked[name]]
    items = [{"images": preprocess(s["images"]), "captions": list(s["captions"]), "label": int(s["label"]),
              "category": int(s["category"])} for _, _, s in chosen]
    return Panel("val", collate_mcq(items) if items else {}, [s["images"] for _, _, s in chosen],
                 [name for name, _, _ in chosen], [n for _, n, _ in chosen])


def _token_labels(encoder: FrozenCLIP, ids: torch.Tensor) -> list[str]:
    """Each BPE id as its token text (``<sot>``, ``<eot>``), cut to :data:`TOKEN_LABEL` characters;
    the id itself where the tokenizer cannot decode one."""
    decode = getattr(encoder.tokenizer, "decode", None)
    out = []
    for i in ids.tolist():
        try:
            text = decode([i]).strip() if decode is not None else str(i)
        except Exception:  # noqa: BLE001 - a label only
            text = str(i)
        text = {"<start_of_text>": "<sot>", "<end_of_text>": "<eot>"}.get(text, text)
        out.append(text[:TOKEN_LABEL])
    return out


def _map_tile(dcsm_map: torch.Tensor, mask: torch.Tensor, fr: torch.Tensor | None, labels: list[str],
              font: Any) -> Image.Image:
    """One option's map: its real token rows (labelled by token, left) x patches, min-max coloured;
    functional rows outlined and labelled in red."""
    rows = mask.bool().cpu()
    m = dcsm_map.float().cpu()[rows].numpy()
    func = (fr.cpu()[rows] if fr is not None else torch.zeros(len(m), dtype=torch.bool)).tolist()
    tile = render_heatmap(m, size=TILE)  # (L, P) stretched to TILE x TILE, nearest
    canvas = Image.new("RGB", (LABEL_WIDTH + TILE, TILE), "white")
    canvas.paste(tile, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = TILE / max(len(m), 1)
    shown = [lab for lab, keep in zip(labels, rows.tolist()) if keep]
    for r, (lab, on) in enumerate(zip(shown, func)):
        top = r * row_h
        draw.text((LABEL_WIDTH - 3, top + row_h / 2), lab, fill=RED if on else "black", font=font, anchor="rm")
        if on:
            draw.rectangle([LABEL_WIDTH, round(top), LABEL_WIDTH + TILE - 1, round(top + row_h) - 1], outline=RED)
    return canvas


def render_panel(
    path: Path, title: str, images: list[Image.Image], captions: list[list[str]], label: list[int], other: list[int],
    verdict: list[str], maps: torch.Tensor, masks: torch.Tensor, fr: torch.Tensor | None, token_ids: torch.Tensor,
    encoder: FrozenCLIP,
) -> Path:
    """One category's panel PNG: a row per example (see the module doc) under a title; ``maps``
    ``(n, 2, L, P)`` of the correct and the other option, ``masks``/``fr``/``token_ids`` ``(n, 2, L)``.
    Composed with PIL from :mod:`dcsm.model.heatmaps`' pictures (matplotlib took ~5 s per panel)."""
    try:
        font = ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    widths = [TILE, TILE, TILE, LABEL_WIDTH + TILE, LABEL_WIDTH + TILE]
    head = TITLE_LINES * LINE_HEIGHT
    row_h = head + TILE + PAD
    top = 2 * LINE_HEIGHT + PAD
    canvas = Image.new("RGB", (sum(widths) + PAD * (len(widths) + 1), top + row_h * len(images)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, PAD), title, fill="black", font=font)
    draw.text((PAD, PAD + LINE_HEIGHT), "heatmaps: mean over the non-functional token rows; maps: token rows x patches "
              f"({maps.shape[-1]}), functional rows in red", fill=RED, font=font)
    spec = encoder.spec
    for i, image in enumerate(images):
        y = top + i * row_h
        other_name = {"right": "runner-up", "tie": "tied", "wrong": "chosen"}[verdict[i]]
        caps = [captions[i][label[i]], captions[i][other[i]]]
        tiles = [image.convert("RGB").resize((TILE, TILE), Image.BILINEAR)]
        titles = [f"DCSM {verdict[i]}"]
        for j, name in enumerate(("correct", other_name)):
            heat = spatial_heatmap(maps[i, j], masks[i, j], encoder.grid_size, spec.keep_cls, None if fr is None else fr[i, j])
            tiles.append(render_heatmap(heat, image, size=TILE))
            titles.append(f"{name}: {caps[j]}")
        for j, name in enumerate(("correct", other_name)):
            tiles.append(_map_tile(maps[i, j], masks[i, j], None if fr is None else fr[i, j],
                                   _token_labels(encoder, token_ids[i, j]), font))
            titles.append(f"map: {name}")
        x = PAD
        for tile, text, w in zip(tiles, titles, widths):
            lines = textwrap.wrap(text, CAPTION_WIDTH)[:TITLE_LINES]
            draw.multiline_text((x, y), "\n".join(lines), fill="black", font=font, spacing=2)
            canvas.paste(tile, (x + w - tile.width, y + head))
            x += w + PAD
    canvas.save(path, format="PNG")
    return path


class DashboardCallback(L.Callback):
    """Run config + encoder record at fit start; the validation panel after validation epochs
    (see the module doc). Everything runs on global rank zero only; the other ranks return at once.

    Args:
        cfg: the full run config (plain dict).
        run_dir: the run folder (panels go to ``run_dir/panels``).
    """

    def __init__(self, cfg: dict, run_dir: str | Path) -> None:
        super().__init__()
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.dc = DashboardConfig.from_config(cfg)
        self.panel: Panel | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        encoder = pl_module.model.encoder
        for lg in trainer.loggers:
            lg.log_hyperparams({**self.cfg, "encoder_record": encoder_record(encoder)})
        if not self.dc.per_category:
            return
        source = self.cfg["data"]["source"]
        if source == "shards":
            if self.cfg["data"]["val_shards"]:
                self.panel = shard_panel(self.cfg, self.dc, encoder.preprocess)
            return
        if source != "synthetic":
            log.warning("dashboard: the epoch panel needs images; data.source=%s (cached features) has none, so no "
                        "panel is drawn (dashboard.per_category=0 silences this).", source)
            return
        split = self.dc.split or (self.cfg["data"]["val_splits"] or [None])[0]
        if split is not None:
            self.panel = synthetic_panel(self.cfg, split, self.dc, encoder.preprocess)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (not trainer.is_global_zero or trainer.sanity_checking or self.panel is None or not self.panel.images
                or (trainer.current_epoch + 1) % self.dc.every_n_epochs):
            return
        with torch.inference_mode(False), torch.no_grad():
            paths = self.draw(pl_module, trainer.current_epoch, trainer.global_step)
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):  # one W&B step per epoch: every category's panel
                import wandb

                lg.log_metrics({f"{PANEL_KEY}/{self.panel.split}/{cat}": wandb.Image(str(path), caption=caption)
                                for cat, (path, caption) in paths.items()}, step=trainer.global_step)
        self._prune()

    def draw(self, pl_module: L.LightningModule, epoch: int, step: int) -> dict[str, tuple[Path, str]]:
        """Score the panel with the current head and write its PNGs and ``panel.json`` ->
        ``{category: (png path, caption)}``."""
        assert self.panel is not None
        model = pl_module.model
        (scores, f), = list(score_batches(model, [self.panel.batch], model.encoder.device))
        dcsm, clip, label = scores["dcsm"].float(), scores["clip"].float(), scores["label"]
        pred, clip_pred = top_choice(dcsm), top_choice(clip)
        other = dcsm.scatter(1, label[:, None], float("-inf")).argmax(dim=1)  # best option other than the label
        shown = torch.stack([label, other], dim=1)  # (n, 2): correct, other
        maps, masks, fr = option_maps(model.head, f, torch.arange(len(label)), shown)
        ids = f.token_ids[torch.arange(len(label), device=f.token_ids.device)[:, None], shown.to(f.token_ids.device)]
        verdict = ["tie" if p == TIE else "right" if p == y else "wrong" for p, y in zip(pred.tolist(), label.tolist())]
        out_dir = self.run_dir / PANEL_DIR / f"epoch_{epoch:03d}"
        out_dir.mkdir(parents=True, exist_ok=True)
        captions = self.panel.batch["captions"]
        out: dict[str, tuple[Path, str]] = {}
        examples = []
        for cat in dict.fromkeys(self.panel.categories):
            sel = [i for i, c in enumerate(self.panel.categories) if c == cat]
            right = sum(verdict[i] == "right" for i in sel)
            clip_right = sum(int(clip_pred[i]) == int(label[i]) for i in sel)
            caption = (f"epoch {epoch} step {step}, {self.panel.split}/{cat}: DCSM {right}/{len(sel)} right, "
                       f"CLIP {clip_right}/{len(sel)}")
            path = render_panel(
                out_dir / f"{self.panel.split}_{cat}.png", caption, [self.panel.images[i] for i in sel],
                [captions[i] for i in sel], [int(label[i]) for i in sel], [int(other[i]) for i in sel],
                [verdict[i] for i in sel], maps[sel], masks[sel], None if fr is None else fr[sel], ids[sel], model.encoder,
            )
            out[cat] = (path, caption)
            examples += [{"category": cat, "index": self.panel.indices[i], "captions": captions[i], "label": int(label[i]),
                          "dcsm_choice": int(pred[i]), "clip_choice": int(clip_pred[i]), "shown_other": int(other[i]),
                          "dcsm_scores": [round(float(v), 4) for v in dcsm[i]],
                          "clip_scores": [round(float(v), 4) for v in clip[i]]} for i in sel]
        atomic_write_json(out_dir / "panel.json", nan_to_none({
            "epoch": epoch, "step": step, "split": self.panel.split, "rank": pl_module.global_rank,
            "files": {c: p.name for c, (p, _) in out.items()}, "examples": examples,
        }))
        return out

    def _prune(self) -> None:
        """Keep the newest ``keep_epochs`` panel folders (by epoch number)."""
        root = self.run_dir / PANEL_DIR
        folders = sorted((int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _EPOCH_DIR.match(p.name)))
        for _, old in folders[: max(len(folders) - self.dc.keep_epochs, 0)]:
            shutil.rmtree(old, ignore_errors=True)
