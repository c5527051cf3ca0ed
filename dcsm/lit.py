"""LightningModule: a frozen encoder + the trainable DCSM head, multiple-choice training.

Checkpoints hold the head (CNN + functional-row buffers) and the full config including the
encoder spec; the frozen CLIP weights are *not* copied into them (they are rebuilt from the
spec: pretrained tag, local file, or seeded random init).
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from .encoders import EncoderSpec, FrozenCLIP
from .evaluation import clip_scores, dcsm_scores
from .features import ensure_features
from .functional_rows import FunctionalRows, resolve_lexicon
from .model import DCSMHead, MapConfig
from .scorer import ScorerConfig, build_pooled, build_scorer

ENCODER_PREFIX = "encoder."
LOSSES = ("mcq", "paired")


def to_plain(cfg: DictConfig | dict) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def build_head(cfg: dict, encoder: FrozenCLIP) -> DCSMHead:
    """Functional rows + CNN for this encoder's map size, from the ``functional_rows``,
    ``maps`` and ``scorer`` config sections."""
    fr = cfg["functional_rows"]
    rows = FunctionalRows(
        resolve_lexicon(fr["lexicon"]), encoder.tokenizer, encoder.num_patches, seed=fr["seed"], init=fr["init"]
    )
    sc = ScorerConfig(**cfg["scorer"])
    scorer = build_scorer(sc, encoder.spec.max_tokens, encoder.num_patches, encoder.grid_size, encoder.spec.keep_cls)
    pooled = build_pooled(sc, scorer, float(encoder.model.logit_scale.exp()))
    return DCSMHead(rows, scorer, MapConfig(**cfg["maps"]), pooled)


def mcq_loss(head: DCSMHead, f: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiple-choice cross-entropy over each image's K options -> (loss, accuracy)."""
    scores = dcsm_scores(head, f)  # (N, K)
    return F.cross_entropy(scores, f["label"]), (scores.argmax(1) == f["label"]).float().mean()


def paired_loss(head: DCSMHead, f: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's in-batch loss: N images + their N opposite images against the N positive
    and N opposite captions, one ``(2N, 2N)`` all-pairs score matrix, symmetric cross-entropy
    (image->text and text->image) with identity targets -> (loss, image->text accuracy)."""
    n = len(f["label"])
    rows = torch.arange(n, device=f["label"].device)
    pick = lambda key: torch.cat([f[key][rows, f["label"]], f[key][rows, f["opposite_label"]]])  # noqa: E731
    patches = torch.cat([f["patches"], f["opposite_patches"]])  # (2N, P, D)
    scores = head(patches, pick("tokens"), pick("token_mask"), pick("token_ids"), pairing="all",
                  image_pooled=torch.cat([f["image_pooled"], f["opposite_image_pooled"]]), text_pooled=pick("text_pooled"))  # (2N, 2N)
    target = torch.arange(2 * n, device=scores.device)
    loss = (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target)) / 2
    return loss, (scores.argmax(1) == target).float().mean()


LOSS_FNS = {"mcq": mcq_loss, "paired": paired_loss}


class DCSMModule(L.LightningModule):
    """Frozen CLIP + DCSM head trained with multiple-choice cross-entropy.

    Args:
        cfg: the full run config (plain dict or DictConfig); saved as hyper-parameters.
        categories: names of the ``category`` indices in batches (per-category metrics).
        val_names: names of the validation dataloaders, in order.
        encoder: an already-built encoder to share (e.g. with a feature-caching DataModule);
            built from ``cfg["encoder"]`` when omitted.
    """

    def __init__(
        self,
        cfg: DictConfig | dict,
        categories: Sequence[str] = (),
        val_names: Sequence[str] = ("val",),
        encoder: FrozenCLIP | None = None,
    ) -> None:
        super().__init__()
        cfg = to_plain(cfg)
        self.save_hyperparameters({"cfg": cfg, "categories": list(categories), "val_names": list(val_names)}, logger=False)
        self.cfg = cfg
        if cfg["loss"]["kind"] not in LOSSES:
            raise ValueError(f"unknown loss.kind '{cfg['loss']['kind']}'. Fix: use one of {LOSSES}.")
        self.encoder = encoder if encoder is not None else FrozenCLIP(EncoderSpec(**cfg["encoder"]))
        self.head = build_head(cfg, self.encoder)
        self.categories = tuple(categories)
        self.val_names = tuple(val_names)
        self.strict_loading = False  # the frozen encoder is rebuilt, not loaded
        self._val_stats: dict[int, torch.Tensor] = {}
        self.samples_seen = 0  # this rank's training samples; restored on resume

    # ------------------------------------------------------------- steps
    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Scores ``(N, K)`` of a raw or feature batch."""
        return dcsm_scores(self.head, ensure_features(self.encoder, batch))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        f = ensure_features(self.encoder, batch)
        loss, acc = LOSS_FNS[self.cfg["loss"]["kind"]](self.head, f)
        n = len(f["label"])
        self.samples_seen += n
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/acc", acc, prog_bar=True, batch_size=n)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_stats = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        f = ensure_features(self.encoder, batch)
        dcsm = dcsm_scores(self.head, f)
        loss = F.cross_entropy(dcsm, f["label"])
        name = self.val_names[dataloader_idx]
        self.log(f"{name}/loss", loss, batch_size=len(dcsm), add_dataloader_idx=False, sync_dist=True)
        # (categories + 1, 3) sums of [n, dcsm correct, clip correct]; last row = all
        n_cat = max(len(self.categories), 1)
        cat = f.get("category", torch.zeros_like(f["label"]))
        cat = cat if len(self.categories) else torch.zeros_like(cat)
        hits = torch.stack(
            [torch.ones_like(dcsm[:, 0]), (dcsm.argmax(1) == f["label"]).float(),
             (clip_scores(f).argmax(1) == f["label"]).float()], dim=1
        )
        known = (cat >= 0) & (cat < n_cat)  # shards may carry categories outside the list (-1)
        stats = torch.zeros(n_cat + 1, 3, device=dcsm.device).index_add_(0, cat[known].long(), hits[known])
        stats[-1] = hits.sum(0)
        prev = self._val_stats.get(dataloader_idx)
        self._val_stats[dataloader_idx] = stats if prev is None else prev + stats

    def on_validation_epoch_end(self) -> None:
        n_rows = max(len(self.categories), 1) + 1
        for idx in range(len(self.val_names)):  # every rank reduces every loader, even one it saw no batch of
            stats = self._val_stats.get(idx, torch.zeros(n_rows, 3, device=self.device))
            stats = self.trainer.strategy.reduce(stats, reduce_op="sum")
            name = self.val_names[idx]
            names = [*(self.categories or ()), "all"] if self.categories else ["", "all"]
            for row, cat in zip(stats, names):
                if not cat or row[0] == 0:
                    continue
                suffix = "" if cat == "all" else f"_{cat}"
                self.log(f"{name}/acc{suffix}", row[1] / row[0], add_dataloader_idx=False, sync_dist=False)
                self.log(f"{name}/clip_acc{suffix}", row[2] / row[0], add_dataloader_idx=False, sync_dist=False)
        self._val_stats = {}

    # ------------------------------------------------------------- optim
    def configure_optimizers(self) -> dict[str, Any]:
        o = self.cfg["optim"]
        opt = torch.optim.AdamW(self.head.parameters(), lr=o["lr"], weight_decay=o["weight_decay"])
        warmup, floor = int(o["warmup_steps"]), o["min_lr_ratio"]
        horizon: list[int] = []

        def total_steps() -> float:
            # Read lazily: asking for estimated_stepping_batches here would build the train loader
            # before a resumed run restores its loop state, and its stream position would be lost.
            if not horizon:
                est = float(self.trainer.estimated_stepping_batches)
                horizon.append(max(est, warmup + 1) if math.isfinite(est) and est > 0 else math.inf)
            return horizon[0]

        def lr_lambda(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if step == warmup or not math.isfinite(total_steps()):
                return 1.0  # cosine starts at its peak; unbounded runs (max_epochs=-1) keep it
            progress = min((step - warmup) / max(total_steps() - warmup, 1), 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoint["state_dict"] comes from state_dict() below, which already leaves the encoder out
        checkpoint["dcsm"] = {
            "encoder": self.encoder.spec.to_dict(),
            "lexicon": list(self.head.functional_rows.phrases),
            "samples_seen": self.samples_seen,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.samples_seen = int(checkpoint.get("dcsm", {}).get("samples_seen", 0))
        missing = [k for k in self.head.state_dict() if f"head.{k}" not in checkpoint["state_dict"]]
        if missing:
            raise KeyError(f"checkpoint lacks DCSM head weights {missing[:5]}; is it a dcsm checkpoint?")

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Head only: the frozen encoder is rebuilt from its spec, never saved."""
        sd = super().state_dict(*args, **kwargs)
        return type(sd)((k, v) for k, v in sd.items() if not k.startswith(ENCODER_PREFIX))


def load_module(path: str, map_location: str | torch.device = "cpu", encoder: FrozenCLIP | None = None) -> DCSMModule:
    """Load a dcsm checkpoint (or an authors' DCSM_Ideal_CLIP checkpoint, see :mod:`dcsm.reference`);
    the encoder is rebuilt from the stored spec (or the given one is used)."""
    from .reference import is_reference_checkpoint, lenient_pickle, module_from_reference

    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"checkpoint '{path}' does not exist. Fix: give the path of a .ckpt written by train.py (evaluate.py: eval.checkpoint=PATH)."
        )
    ckpt = torch.load(path, map_location=map_location, weights_only=False, pickle_module=lenient_pickle)
    if is_reference_checkpoint(ckpt):
        return module_from_reference(ckpt, path, encoder)
    if not isinstance(ckpt, dict) or "cfg" not in ckpt.get("hyper_parameters", {}):
        raise ValueError(f"'{path}' is neither a dcsm checkpoint (no hyper_parameters.cfg) nor a DCSM_Ideal_CLIP one.")
    hp = ckpt["hyper_parameters"]
    module = DCSMModule(hp["cfg"], categories=hp.get("categories", ()), val_names=hp.get("val_names", ("val",)), encoder=encoder)
    module.on_load_checkpoint(ckpt)
    module.head.load_state_dict({k[len("head."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("head.")})
    return module.eval()
