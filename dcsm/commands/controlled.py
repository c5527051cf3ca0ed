"""Diagnostics on the controlled small CLIPs (issue 27): each experiment writes ``<name>.json``,
``<name>.png`` and ``<name>.md`` into ``controlled.out_dir``, and logs them to W&B when
``logger.kind=wandb`` (offline files under ``run_dir``).

    python data_prep/controlled.py [controlled.experiments=[center_bias,spurious]] [key=value ...]

Weights: ``controlled.weights_dir/<variant>_s<seed>/`` as written by
``data_prep/pretrain_toy_clip.py --config configs/pretrain_controlled_<variant>.yaml``. The sweep
and its mitigations read ``diagnostics.center_bias``; pruning reads ``diagnostics`` (image set,
TextSpan, concept lexicon, pruning mode) on the sweep (sweep variants) or the cue scenes (spurious).
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ..config import CONFIG_DIR, load_yaml, parse_cli, to_plain
from ..config_checks import check_config, check_writable

SECTION = "controlled"
PRETRAIN_CONFIGS = {v: CONFIG_DIR / f"pretrain_controlled_{v}.yaml" for v in ("centred", "meanpool", "uniform", "spurious")}


def scenes_section(variant: str) -> dict:
    """The ``scenes:`` section a variant was pretrained with (its config over the pretraining defaults)."""
    return to_plain(parse_cli(["--config", str(PRETRAIN_CONFIGS[variant])], default=CONFIG_DIR / "pretrain_toy_clip.yaml"))["scenes"]


class _Models:
    """Encoders loaded once per (variant, seed); None for a run without weights."""

    def __init__(self, weights_dir: str, device: str, heads_dir: str | None = None) -> None:
        self.weights_dir, self.device, self.cache, self.records = weights_dir, device, {}, {}
        self.heads_dir, self.head_cache = heads_dir, {}

    def heads(self, variant: str, seed: int) -> dict[str, Any]:
        """``{"dcsm": head}`` for a run with an exported DCSM head under ``heads_dir``, else ``{}``."""
        from ..diagnostics.controlled.models import HEAD_FILE, load_head, variant_dir

        key = (variant, int(seed))
        enc = self(variant, seed)
        if key not in self.head_cache:
            head = None if enc is None or self.heads_dir is None else load_head(self.heads_dir, variant, seed, enc)
            self.head_cache[key] = head
            if head is not None:
                self.records[f"{variant}_s{seed}"]["head"] = str(variant_dir(self.heads_dir, variant, seed) / HEAD_FILE)
        return {} if self.head_cache[key] is None else {"dcsm": self.head_cache[key]}

    def __call__(self, variant: str, seed: int) -> Any:
        from ..diagnostics.controlled.models import find_weights, load_variant

        key = (variant, int(seed))
        if key not in self.cache:
            found = find_weights(self.weights_dir, variant, seed)
            self.cache[key] = load_variant(self.weights_dir, variant, seed, self.device)[0] if found else None
            if found:
                self.records[f"{variant}_s{seed}"] = {k: found[1].get(k) for k in ("model", "weights", "sha256", "train_wall_s",
                                                                                   "clip_cosine", "samples")}
        return self.cache[key]

    def first(self, variant: str, seeds: Sequence[int]) -> tuple[Any, int]:
        for s in seeds:
            if self(variant, s) is not None:
                return self(variant, s), int(s)
        raise FileNotFoundError(f"{SECTION}: no weights for variant '{variant}' (seeds {list(seeds)}) under "
                                f"'{self.weights_dir}'. Fix: pretrain it (configs/pretrain_controlled_{variant}.yaml) or "
                                f"set {SECTION}.weights_dir.")


def _pruning(models: _Models, cfg: dict) -> dict:
    from ..diagnostics.controlled.pruning import cue_task, prune, sweep_task

    c, bs = cfg[SECTION], int(cfg[SECTION]["batch_size"])
    result = {}
    for v in c["pruning"]["variants"]:
        enc, seed = models.first(v, c["seeds"])
        task = cue_task(enc, scenes_section(v), int(c["spurious"]["size"]), int(c["spurious"]["test_seed"])) \
            if v == "spurious" else sweep_task(enc, cfg["diagnostics"]["center_bias"])
        result[f"{v}_s{seed}"] = prune(enc, task, cfg["diagnostics"], list(c["pruning"]["ks"]), list(c["pruning"]["seeds"]), bs,
                                       models.heads(v, seed))
    return result


def run_experiment(name: str, models: _Models, cfg: dict) -> dict:
    """One experiment's result (JSON-ready)."""
    from ..diagnostics.controlled import center, segmentation, spurious

    c, bs = cfg[SECTION], int(cfg[SECTION]["batch_size"])
    sweep = cfg["diagnostics"]["center_bias"]
    if name == "center_bias":
        return center.center_bias_runs(models, c["center_bias"]["variants"], c["seeds"], sweep, bs, models.heads)
    if name == "mitigations":
        runs = {}
        for s in c["seeds"][: int(c["mitigations"]["runs"])]:
            if models("centred", s) is not None:
                runs[f"centred_s{s}"] = center.mitigation_runs(models("centred", s), sweep, c["mitigations"]["strengths"], bs,
                                                               models.heads("centred", s))
        if not runs:
            models.first("centred", c["seeds"])  # raises, naming the fix
        return {"runs": runs}
    if name == "spurious":
        enc, seed = models.first("spurious", c["seeds"])
        return {"run": f"spurious_s{seed}", **spurious.run_spurious(enc, scenes_section("spurious"), c["spurious"], bs)}
    if name == "pruning":
        return _pruning(models, cfg)
    result = {}
    for v in c["segmentation"]["variants"]:
        enc, seed = models.first(v, c["seeds"])
        result[f"{v}_s{seed}"] = segmentation.run_segmentation(enc, scenes_section(v), c["segmentation"], bs)
    return result


def _wandb(cfg: dict) -> Any:
    if cfg["logger"]["kind"] != "wandb":
        return None
    import wandb

    Path(cfg["run_dir"]).mkdir(parents=True, exist_ok=True)
    return wandb.init(project=cfg["logger"]["project"], name=cfg["logger"].get("name") or "controlled",
                      mode=cfg["logger"]["mode"], dir=str(cfg["run_dir"]), job_type="diagnostics",
                      config={SECTION: cfg[SECTION]})


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``[--config FILE] [key=value ...]`` -> run ``controlled.experiments``; returns ``{name: files}``."""
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = check_config(to_plain(parse_cli(args)))
    c = cfg[SECTION]
    check_writable(f"{SECTION}.out_dir", c["out_dir"], "folder")
    import torch

    from ..diagnostics.controlled.report import write_experiment

    torch.manual_seed(int(cfg["seed"]))
    out = Path(c["out_dir"])
    models = _Models(c["weights_dir"], c["device"], c["heads_dir"])
    run = _wandb(cfg)
    files: dict[str, Any] = {}
    try:
        for name in c["experiments"]:
            start = time.perf_counter()
            result = run_experiment(name, models, cfg)
            meta = {"experiment": name, "command": " ".join(["python data_prep/controlled.py", f"{SECTION}.experiments=[{name}]",
                                                             *[a for a in args if not a.startswith(f'{SECTION}.experiments=')]]),
                    "weights": dict(models.records), "config": c, "wall_s": round(time.perf_counter() - start, 1),
                    "torch": torch.__version__, "python": platform.python_version(), "device": c["device"]}
            files[name] = write_experiment(name, result, meta, out, run)
            print(f"{name}: {meta['wall_s']} s -> {files[name]['md']}")
    finally:
        if run is not None:
            run.finish()
    return files
