"""Center bias, causally: the position sweep of :mod:`dcsm.diagnostics.center_bias` on every
pretraining seed of the centred, mean-pooled and uniform variants, and the two mitigations on
the centred one.

Per run: the sweep's centre/border ratio with its percentile-bootstrap interval over images.
Over seeds: the mean of the per-seed ratios with a Student-t 95% interval (``n - 1`` degrees of
freedom; none with one seed).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from ..center_bias import run_mitigations, run_sweep
from ..option_scoring import TextTable
from ..position_sweep import SweepConfig, render_sweep

__all__ = ["T_975", "seed_interval", "center_bias_runs", "mitigation_runs"]

#: two-sided 95% Student-t quantiles by degrees of freedom (1..10); beyond, the normal's 1.96
T_975: dict[int, float] = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
                           9: 2.262, 10: 2.228}
#: the sweep's scorers: CLIP cosine (sweep options), CLIP zero-shot, and a DCSM head where the run has one
SCORERS: tuple[str, ...] = ("clip", "clip_zero_shot", "dcsm")
#: ``heads(variant, seed) -> {name: scorer}`` (empty: CLIP only)
HeadsFn = Callable[[str, int], dict[str, Any]]


def seed_interval(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean over seeds and its 95% t-interval (``[None, None]`` with fewer than 2 defined values)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return {"mean": None, "ci": [None, None], "n": 0, "values": list(values)}
    m = sum(v) / len(v)
    if len(v) < 2:
        return {"mean": m, "ci": [None, None], "n": 1, "values": list(values)}
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    half = T_975.get(len(v) - 1, 1.96) * sd / math.sqrt(len(v))
    return {"mean": m, "ci": [m - half, m + half], "n": len(v), "values": list(values)}


def _summary(scores: dict[str, dict]) -> dict[str, dict]:
    keep = ("acc", "centre_acc", "border_acc", "ratio", "ratio_ci", "diff", "diff_ci", "n_centre", "n_border", "cell_acc")
    return {name: {k: scores[name][k] for k in keep} for name in SCORERS if name in scores}


def center_bias_runs(load: Callable[[str, int], Any], variants: Sequence[str], seeds: Sequence[int], sweep_cfg: dict,
                     batch_size: int, heads: HeadsFn | None = None) -> dict[str, Any]:
    """Sweep every ``(variant, seed)`` that ``load`` returns an encoder for (None: missing), with
    the DCSM scorers ``heads`` gives for that run.

    Returns ``{"runs": {variant: {seed: {scorer: stats}}}, "over_seeds": {variant: {scorer:
    {"ratio": seed_interval, "border_acc": ..., "centre_acc": ...}}}, "missing": [...]}``.
    """
    cfg = SweepConfig.from_dict(sweep_cfg)
    runs: dict[str, dict] = {}
    missing: list[str] = []
    for variant in variants:
        runs[variant] = {}
        for seed in seeds:
            enc = load(variant, seed)
            if enc is None:
                missing.append(f"{variant}_s{seed}")
                continue
            scorers = heads(variant, seed) if heads is not None else {}
            runs[variant][str(seed)] = _summary(run_sweep(enc, cfg, scorers or None, batch_size)["scores"])
    over = {v: {name: {key: seed_interval([r[name][key] for r in per_seed.values() if name in r])
                       for key in ("ratio", "centre_acc", "border_acc", "acc")}
                for name in SCORERS if any(name in r for r in per_seed.values())} for v, per_seed in runs.items() if per_seed}
    return {"runs": runs, "over_seeds": over, "missing": missing, "sweep": {k: sweep_cfg[k] for k in
            ("grid", "centre_ring", "object_size", "repeats", "num_options", "n_bootstrap", "ci")}}


def mitigation_runs(enc: Any, sweep_cfg: dict, strengths: Sequence[float], batch_size: int,
                    scorers: dict[str, Any] | None = None) -> dict[str, Any]:
    """Visual prompting and attention redistribution on one encoder (and its DCSM ``scorers``) at
    ``strengths`` (0 = identity is added when absent): per strength, acc / border acc / ratio with
    intervals per scorer."""
    cfg = SweepConfig.from_dict(sweep_cfg)
    s = sorted({0.0, *(float(x) for x in strengths)})
    m = {**sweep_cfg["mitigations"], "prompt_strengths": s, "attention_strengths": s}
    size = cfg.render_size or int(enc.image_size[0])
    sweep = render_sweep(cfg, size)
    out = run_mitigations(enc, cfg, m, scorers or None, batch_size, sweep, TextTable(enc, cfg.vocabulary()), progress=False)
    return {kind: [{"strength": r["strength"], "scores": _summary(r["scores"])} for r in rows] for kind, rows in out.items()}
