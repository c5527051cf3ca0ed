"""Contrastive pretraining of the small offline CLIP on captioned synthetic scenes.

One Lightning module: an open_clip CLIP trained with open_clip's ``ClipLoss`` (symmetric
InfoNCE over the batch, no hard negatives), AdamW with warmup + cosine decay, CLIP's clamp on
the learned logit scale. Sample ``i`` of step ``s`` is captioned scene ``s * batch_size + i``
of the seed's stream, so a run is a deterministic function of its config (up to
non-deterministic GPU kernels). After training the weights are exported as fp16 safetensors
and re-loaded through :class:`dcsm.model.encoders.FrozenCLIP` to measure CLIP cosine
multiple-choice accuracy per category on held-out synthetic splits, and binding accuracy on
held-out scenes of its own pretraining distribution (``own_binding``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import open_clip
import torch
from open_clip.loss import ClipLoss
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from ..model import toy_clip  # noqa: F401 - registers dcsm-toy-ViT with open_clip
from ..config_checks import check_config, check_writable
from .runner import OWN_DEFAULTS
from ..config import DEFAULT_CONFIG, ConfigError, load_yaml, parse_cli, to_plain
from ..data.synthetic.captioned import BINDING_OPTIONS, CaptionedConfig, CaptionedScenes, binding_probe
from ..data.synthetic.dataset import SyntheticDataConfig, scene_dataset
from ..model.encoders import EncoderSpec, FrozenCLIP, check_model_name
from ..features import collate_mcq, ensure_features
from ..io import atomic_write_json
from ..eval.metrics import top_choice
from ..model.dcsm import DCSM
from ..diagnostics.pruning import clip_scorer

PRETRAIN_CONFIG = OWN_DEFAULTS[__name__]
log = logging.getLogger("dcsm.commands.pretrain_toy_clip")


class ContrastiveCLIP(L.LightningModule):
    """An open_clip CLIP trained from scratch with in-batch negatives.

    Args:
        model_name: open_clip model name (random init, seeded by the caller).
        optim: the ``optim:`` config section.
    """

    def __init__(self, model_name: str, optim: dict[str, Any]) -> None:
        super().__init__()
        self.model = open_clip.create_model(model_name, output_dict=True)
        self.loss_fn = ClipLoss()
        self.optim = dict(optim)
        self._t0 = time.perf_counter()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, ids = batch  # (B, 3, H, W), (B, context)
        out = self.model(images, ids)
        loss = self.loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        with torch.no_grad():
            logits = out["image_features"] @ out["text_features"].T  # (B, B)
            acc = (logits.argmax(1) == torch.arange(len(ids), device=logits.device)).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(ids))
        self.log("train/acc", acc, prog_bar=True, batch_size=len(ids))
        self.log("train/logit_scale", out["logit_scale"].detach().float(), batch_size=len(ids))
        every = self.trainer.log_every_n_steps if self._trainer is not None else 0
        if every and self.global_step % every == 0:  # plain progress lines (no logger, no progress bar)
            log.info("step %d/%d loss %.4f in-batch acc %.3f logit_scale %.1f %.0fs", self.global_step,
                     self.optim["steps"], float(loss.detach()), float(acc), float(out["logit_scale"].detach()), time.perf_counter() - self._t0)
        return loss

    def on_train_start(self) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        with torch.no_grad():  # as CLIP: the temperature may not sharpen beyond 1/100
            self.model.logit_scale.clamp_(0, math.log(self.optim["max_logit_scale"]))

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.optim
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        # open_clip's recipe: no weight decay on gains, biases, embeddings and the logit scale
        no_decay = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
        groups = [
            {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
            {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": o["weight_decay"]},
        ]
        opt = torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])
        warmup, total, floor = int(o["warmup_steps"]), int(o["steps"]), float(o["min_lr_ratio"])

        def lr_lambda(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def export_fp16(model: torch.nn.Module, path: Path) -> str:
    """Write the state dict as fp16 safetensors; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@torch.no_grad()
def clip_cosine_accuracy(
    encoder: FrozenCLIP, split: str, size: int, image_size: int, batch_size: int, device: str | torch.device = "cpu",
) -> dict[str, float]:
    """CLIP cosine (pooled image x pooled caption) multiple-choice accuracy per category and
    ``all`` on the first ``size`` scenes of a synthetic split (seed 0, 4 options)."""
    run_cfg = to_plain(load_yaml(DEFAULT_CONFIG))  # the synthetic data's one home: configs/default.yaml
    run_cfg["data"].update(image_size=image_size, **{f"{split}_size": size})
    cfg = SyntheticDataConfig.from_config(run_cfg)
    ds = scene_dataset(cfg, split, encoder.preprocess)
    loader = DataLoader(ds, batch_size=batch_size, collate_fn=collate_mcq, num_workers=0)
    encoder.to(device)
    hits, cats = [], []
    for batch in loader:
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        f = ensure_features(encoder, batch)
        hits.append((top_choice(DCSM.clip_scores(f)) == f.label).float().cpu())  # a tie counts wrong
        cats.append(batch["category"].cpu())
    hit, cat = torch.cat(hits), torch.cat(cats)
    out = {name: float(hit[cat == i].mean()) for i, name in enumerate(cfg.categories) if (cat == i).any()}
    out["all"] = float(hit.mean())
    return out


@torch.no_grad()
def own_binding_accuracy(encoder: FrozenCLIP, scenes: CaptionedConfig, size: int, seed: int, batch_size: int,
                         device: str | torch.device = "cpu") -> dict[str, Any]:
    """CLIP cosine binding accuracy on the model's own pretraining distribution
    (:func:`dcsm.data.synthetic.captioned.binding_probe`: ``size`` held-out pair scenes of stream
    ``seed``, 4 options that differ only in what binds to what; chance 0.25). Also the share of
    each wrong option among the misses."""
    images, options = binding_probe(scenes, size, seed)
    encoder.to(device)
    score = clip_scorer(encoder)  # pooled image x pooled caption cosine, (b, 4)
    picks = [top_choice(score(torch.stack([encoder.preprocess(im) for im in images[i:i + batch_size]]),
                              options[i:i + batch_size])).cpu()  # a tie counts wrong
             for i in range(0, size, batch_size)]
    pick = torch.cat(picks)
    chosen = {name: int((pick == k).sum()) for k, name in enumerate(BINDING_OPTIONS)}
    return {"accuracy": chosen[BINDING_OPTIONS[0]] / size, "n": size, "seed": seed, "chosen": chosen}


def pretrain(cfg: dict, command: str = "") -> dict[str, Any]:
    """Train, export fp16 weights, measure held-out CLIP cosine accuracy; returns the record."""
    o, t, ev = cfg["optim"], cfg["trainer"], cfg["eval"]
    out_dir = Path(cfg["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg["seed"], workers=True)
    module = ContrastiveCLIP(cfg["model"], o)
    preprocess = open_clip.image_transform(module.model.visual.image_size, is_train=False)
    tokenizer = open_clip.get_tokenizer(cfg["model"])
    data = CaptionedScenes(o["steps"] * o["batch_size"], preprocess, tokenizer, seed=cfg["seed"],
                           cfg=CaptionedConfig.from_config(cfg["scenes"]))
    workers = int(cfg["data"]["num_workers"])
    loader = DataLoader(data, batch_size=o["batch_size"], shuffle=False, drop_last=True, num_workers=workers,
                        persistent_workers=workers > 0, pin_memory=t["accelerator"] in ("gpu", "cuda"))
    trainer = L.Trainer(**t, max_steps=o["steps"], default_root_dir=str(out_dir), logger=False,
                        enable_checkpointing=False)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    train_s = time.perf_counter() - start

    weights = out_dir / f"{cfg['model']}.safetensors"
    sha = export_fp16(module.model, weights)
    device = "cuda" if torch.cuda.is_available() and t["accelerator"] in ("gpu", "cuda", "auto") else "cpu"
    start = time.perf_counter()
    encoder = FrozenCLIP(EncoderSpec(model=cfg["model"], pretrained=str(weights), max_tokens=ev["max_tokens"]))
    acc = {s: clip_cosine_accuracy(encoder, s, ev["size"], ev["image_size"], ev["batch_size"], device) for s in ev["splits"]}
    own = own_binding_accuracy(encoder, data.cfg, ev["size"], ev["own_seed"], ev["batch_size"], device)
    fixed = clip_cosine_accuracy(encoder.cpu(), "test", ev["fixed_scenes"], ev["image_size"], ev["batch_size"], "cpu")
    record = {
        "model": cfg["model"],
        "weights": weights.name,
        "sha256": sha,
        "size_bytes": weights.stat().st_size,
        "command": command,
        "config": cfg,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__, "open_clip": open_clip.__version__, "python": platform.python_version(),
        "train_wall_s": round(train_s, 1),
        "eval_wall_s": round(time.perf_counter() - start, 1),
        "samples": o["steps"] * o["batch_size"],
        "final_train_loss": float(trainer.callback_metrics.get("train/loss", float("nan"))),
        "clip_cosine": acc,
        "own_binding": own,
        "fixed_scenes": {"split": "test", "n": ev["fixed_scenes"], "image_size": ev["image_size"], "seed": 0,
                         "accuracy": round(fixed["all"], 2), "device": "cpu"},
    }
    atomic_write_json(out_dir / f"{cfg['model']}.record.json", record)
    return record


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``[--config FILE] [key=value ...]`` -> pretrain and print the held-out accuracies."""
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = check_config(to_plain(parse_cli(args, default=PRETRAIN_CONFIG)))
    check_writable("out_dir", cfg["out_dir"], "folder")
    check_model_name(cfg["model"], key="model")
    if cfg["eval"]["own_seed"] == cfg["seed"]:  # the probe must not draw the training scenes
        raise ConfigError(f"eval.own_seed={cfg['eval']['own_seed']} is the training stream (seed={cfg['seed']}). "
                          "Fix: give eval.own_seed a seed no pretraining run uses (default 1000).")
    record = pretrain(cfg, command=" ".join(["python data_prep/pretrain_toy_clip.py", *args]))
    print(json.dumps({k: record[k] for k in ("weights", "train_wall_s", "clip_cosine", "own_binding", "fixed_scenes")}, indent=1))
    return record
