"""The center-bias position sweep: its config, the rendered grid of single-object images, ring
geometry, and the centre/border accuracy statistics (:mod:`dcsm.diagnostics.center_bias` runs it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.synthetic.render import draw_shape
from ..data.synthetic.vocab import COLOURS, SHAPES
from .option_scoring import PassResult
from .pruning import is_correct


__all__ = ["CenterBiasConfigError", "SweepConfig", "Sweep", "ring_index", "centre_border_cells", "render_sweep", "cell_accuracy", "centre_border_ratio", "sweep_scores", "ZERO_SHOT"]

ZERO_SHOT = "clip_zero_shot"
STREAM = 7311  # RNG stream of the sweep (another number than the synthetic scenes' split codes)


class CenterBiasConfigError(ValueError):
    """A ``diagnostics.center_bias.*`` setting is missing or invalid."""


def config_error(key: str, problem: str, fix: str) -> CenterBiasConfigError:
    return CenterBiasConfigError(f"diagnostics.center_bias.{key}: {problem}. Fix: {fix}.")


@dataclass(frozen=True)
class SweepConfig:
    """The sweep's settings (``diagnostics.center_bias`` minus ``cross_eyed``/``mitigations``)."""

    grid: int
    centre_ring: int
    object_size: float
    colours: tuple[str, ...]
    shapes: tuple[str, ...]
    background: tuple[int, int, int]
    background_jitter: int
    position_jitter: float
    repeats: int
    render_size: int | None
    seed: int
    caption: str
    num_options: int
    n_bootstrap: int
    ci: float

    @classmethod
    def from_dict(cls, d: dict) -> "SweepConfig":
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise config_error(missing[0], "key missing", "start from configs/default.yaml's diagnostics.center_bias section")
        c = cls(grid=int(d["grid"]), centre_ring=int(d["centre_ring"]), object_size=float(d["object_size"]),
                colours=tuple(d["colours"]), shapes=tuple(d["shapes"]), background=tuple(int(v) for v in d["background"]),
                background_jitter=int(d["background_jitter"]), position_jitter=float(d["position_jitter"]),
                repeats=int(d["repeats"]), render_size=None if d["render_size"] is None else int(d["render_size"]),
                seed=int(d["seed"]), caption=str(d["caption"]), num_options=int(d["num_options"]),
                n_bootstrap=int(d["n_bootstrap"]), ci=float(d["ci"]))
        c.validate()
        return c

    def validate(self) -> None:
        if self.grid < 3:
            raise config_error("grid", f"{self.grid} leaves no cell between the border rings", "use grid >= 3")
        top = (self.grid - 1) // 2
        if not 1 <= self.centre_ring <= top:
            raise config_error("centre_ring", f"{self.centre_ring} is not a ring of a {self.grid} x {self.grid} grid (1..{top})",
                       f"use 1..{top}")
        if not 0.0 < self.object_size <= 1.0 / self.grid:
            raise config_error("object_size", f"{self.object_size} does not fit a cell (1/{self.grid} = {1 / self.grid:.3f})",
                       f"use a value in (0, {1 / self.grid:.3f}]")
        bad = [c for c in self.colours if c not in COLOURS] + [s for s in self.shapes if s not in SHAPES]
        if bad or not self.colours or not self.shapes:
            raise config_error("colours" if not bad or bad[0] in self.colours else "shapes", f"unknown or empty: {bad}",
                       f"choose colours from {list(COLOURS)} and shapes from {list(SHAPES)}")
        n_obj = len(self.colours) * len(self.shapes)
        if not 2 <= self.num_options <= n_obj:
            raise config_error("num_options", f"{self.num_options} options from {n_obj} objects", f"use 2..{n_obj}")
        if not 0.0 <= self.position_jitter <= 1.0:
            raise config_error("position_jitter", f"{self.position_jitter}", "use a fraction in [0, 1]")
        if self.repeats < 1 or self.n_bootstrap < 1 or not 0.0 < self.ci < 1.0:
            raise config_error("repeats/n_bootstrap/ci", f"{self.repeats}/{self.n_bootstrap}/{self.ci}",
                       "use repeats >= 1, n_bootstrap >= 1, 0 < ci < 1")
        if len(self.background) != 3:
            raise config_error("background", f"{list(self.background)}", "give an RGB triple such as [205, 205, 205]")

    def vocabulary(self) -> list[str]:
        """Object captions, object index ``colour_index * len(shapes) + shape_index``."""
        return [self.caption.format(colour=c, shape=s) for c in self.colours for s in self.shapes]


@dataclass
class Sweep:
    """Rendered sweep: PIL images, and per image ``(N,)`` cell (``r * G + c``) and object index,
    ``(N, 4)`` pixel box of its cell (x0, y0, x1, y1 inclusive), options (label 0)."""

    images: list[Image.Image]
    cells: torch.Tensor
    objects: torch.Tensor
    cell_boxes: torch.Tensor
    options: list[list[str]]
    grid: int


# ----------------------------------------------------------------------------- geometry
def ring_index(grid: int) -> torch.Tensor:
    """``(G, G)`` ring of each cell: 0 on the border, growing inward."""
    r = torch.arange(grid)
    d = torch.minimum(r, grid - 1 - r)
    return torch.minimum(d[:, None], d[None, :])


def centre_border_cells(grid: int, centre_ring: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool ``(G * G,)`` masks (row-major): centre cells (ring >= centre_ring) and border cells (ring 0)."""
    ring = ring_index(grid).flatten()
    return ring >= centre_ring, ring == 0


# ----------------------------------------------------------------------------- rendering
def render_sweep(cfg: SweepConfig, size: int) -> Sweep:
    """Every object at every cell, ``repeats`` times; each image a function of (seed, repeat, object, cell)."""
    G, vocab, n_shapes = cfg.grid, cfg.vocabulary(), len(cfg.shapes)
    cell_px, side = size / G, cfg.object_size * size
    images, cells, objects, boxes, options = [], [], [], [], []
    for rep in range(cfg.repeats):
        for obj in range(len(vocab)):
            colour, shape = cfg.colours[obj // n_shapes], cfg.shapes[obj % n_shapes]
            for cell in range(G * G):
                rng = np.random.default_rng([cfg.seed, STREAM, rep, obj, cell])
                j = cfg.background_jitter
                bg = np.clip(np.asarray(cfg.background) + rng.integers(-j, j + 1, size=3), 0, 255)
                room = (cell_px - side) / 2 * cfg.position_jitter
                r, c = divmod(cell, G)
                cx, cy = np.array([(c + 0.5) * cell_px, (r + 0.5) * cell_px]) + rng.uniform(-room, room, size=2)
                im = Image.new("RGB", (size, size), tuple(int(v) for v in bg))
                x0, y0 = round(cx - side / 2), round(cy - side / 2)
                box = (x0, y0, max(round(cx + side / 2), x0 + 1), max(round(cy + side / 2), y0 + 1))
                draw_shape(ImageDraw.Draw(im), shape, box, COLOURS[colour])
                wrong = [int(k) for k in rng.permutation([k for k in range(len(vocab)) if k != obj])[: cfg.num_options - 1]]
                images.append(im)
                cells.append(cell)
                objects.append(obj)
                boxes.append((c * cell_px, r * cell_px, (c + 1) * cell_px - 1, (r + 1) * cell_px - 1))
                options.append([vocab[obj]] + [vocab[k] for k in wrong])
    return Sweep(images, torch.tensor(cells), torch.tensor(objects), torch.tensor(boxes, dtype=torch.float32), options, G)


def preprocess(encoder, images: Sequence[Image.Image]) -> torch.Tensor:
    """``(N, 3, H, W)`` through the encoder's eval transform."""
    return torch.stack([encoder.preprocess(im) for im in images])


# ----------------------------------------------------------------------------- statistics
def cell_accuracy(correct: torch.Tensor, cells: torch.Tensor, grid: int) -> torch.Tensor:
    """``(G, G)`` mean of bool ``correct (N,)`` per cell (NaN for a cell without images)."""
    n = torch.bincount(cells, minlength=grid * grid).float()
    hits = torch.bincount(cells, weights=correct.float(), minlength=grid * grid)
    return (hits / n).view(grid, grid)


def _ratio(c: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, c / b.clamp_min(1e-12), torch.full_like(c, float("nan")))


def _num(x: torch.Tensor | float) -> float | None:
    v = float(x)
    return v if math.isfinite(v) else None


def centre_border_ratio(correct: torch.Tensor, cells: torch.Tensor, grid: int, centre_ring: int, n_bootstrap: int,
                        ci: float, seed: int) -> dict[str, Any]:
    """Centre and border accuracy, their ratio and difference, with percentile bootstrap intervals.

    Vectorised: one ``(n_bootstrap, n)`` index draw per group. Resamples whose border accuracy is 0
    have no ratio; they are left out of its interval and counted in ``ratio_undefined``.
    """
    centre, border = centre_border_cells(grid, centre_ring)
    yc, yb = correct[centre[cells]].float(), correct[border[cells]].float()
    g = torch.Generator().manual_seed(int(seed))
    bc = yc[torch.randint(len(yc), (n_bootstrap, len(yc)), generator=g)].mean(dim=1)
    bb = yb[torch.randint(len(yb), (n_bootstrap, len(yb)), generator=g)].mean(dim=1)
    lo, hi = (1 - ci) / 2, 1 - (1 - ci) / 2
    ratios = _ratio(bc, bb)
    q = torch.tensor([lo, hi])
    r_ci = torch.nanquantile(ratios, q) if (~ratios.isnan()).any() else torch.full((2,), float("nan"))
    d_ci = torch.quantile(bc - bb, q)
    acc_c, acc_b = yc.mean(), yb.mean()
    return {"centre_acc": float(acc_c), "border_acc": float(acc_b), "ratio": _num(_ratio(acc_c, acc_b)),
            "ratio_ci": [_num(v) for v in r_ci], "ratio_undefined": int(ratios.isnan().sum()),
            "diff": float(acc_c - acc_b), "diff_ci": [float(v) for v in d_ci],
            "n_centre": len(yc), "n_border": len(yb), "n_bootstrap": n_bootstrap, "ci": ci}


def sweep_scores(cfg: SweepConfig, sweep: Sweep, result: PassResult, vocab_pooled: torch.Tensor) -> dict[str, dict]:
    """Per scorer (``clip_zero_shot``, ``clip``, each injected one): overall accuracy, per-cell accuracy
    ``(G, G)`` as nested lists, centre/border statistics."""
    zs = result.pooled @ vocab_pooled.cpu().T  # (N, V) unit-norm cosines
    correct = {ZERO_SHOT: is_correct(zs, sweep.objects)}
    labels = torch.zeros(len(sweep.cells), dtype=torch.long)
    correct.update({name: is_correct(s, labels) for name, s in result.scores.items()})
    out = {}
    for name, ok in correct.items():
        out[name] = {"acc": float(ok.float().mean()), "n": len(ok),
                     "cell_acc": cell_accuracy(ok, sweep.cells, cfg.grid).tolist(),
                     **centre_border_ratio(ok, sweep.cells, cfg.grid, cfg.centre_ring, cfg.n_bootstrap, cfg.ci, cfg.seed)}
    return out
