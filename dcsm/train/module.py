"""LightningModule around a :class:`~dcsm.model.dcsm.DCSM`: multiple-choice training, validation
metrics, optimiser schedule and head-only checkpoints.

Checkpoints hold the head (CNN + functional-row buffers) under ``head.*`` and the full config
including the encoder spec; the frozen CLIP weights are *not* copied into them (they are
rebuilt from the spec: pretrained tag, local file, or seeded random init).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from ..checkpoints.load import HEAD_PREFIX, head_state, load_checkpoint
from ..config import to_plain
from ..model.encoders import FrozenCLIP
from ..eval.loop import score_batch
from ..model.batch import FeatureBatch
from ..eval.metrics import top_choice
from ..model.dcsm import DCSM, DCSMHead, build_dcsm
from ..model.cnn import COMPILE_CHOICES
from .choices import LOSSES

MODEL_PREFIX = "model."


def compile_head(head: DCSMHead, setting: Any, mode: str, device: torch.device) -> bool:
    """``torch.compile`` the head in place (``nn.Module.compile``: its state-dict keys, hence
    checkpoints, stay as they are): its forward (maps + CNN, the embedding path) and its CNN
    (what a map cache feeds). ``setting``: ``compile.head`` (auto: only on CUDA). Returns
    whether it compiled."""
    if setting not in COMPILE_CHOICES:
        raise ValueError(f"unknown compile.head {setting!r}. Fix: use one of auto|true|false.")
    on = device.type == "cuda" if setting == "auto" else bool(setting)
    if on:
        head.compile(mode=mode)
        head.scorer.compile(mode=mode)
    return on


def mcq_loss(model: DCSM, f: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiple-choice cross-entropy over each image's K options -> (loss, accuracy)."""
    scores = model(f)  # (N, K)
    return F.cross_entropy(scores, f.label), (top_choice(scores) == f.label).float().mean()  # a tie counts wrong


def paired_loss(model: DCSM, f: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's in-batch loss: N images + their N opposite images against the N positive
    and N opposite captions, one ``(2N, 2N)`` all-pairs score matrix, symmetric cross-entropy
    (image->text and text->image) with identity targets -> (loss, image->text accuracy)."""
    n = len(f)
    rows = torch.arange(n, device=f.label.device)
    pick = lambda t: torch.cat([t[rows, f.label], t[rows, f.opposite_label]])  # noqa: E731
    patches = torch.cat([f.patches, f.opposite_patches])  # (2N, P, D)
    scores = model.head(patches, pick(f.tokens), pick(f.token_mask), pick(f.token_ids), pairing="all",
                        image_pooled=torch.cat([f.image_pooled, f.opposite_image_pooled]), text_pooled=pick(f.text_pooled))  # (2N, 2N)
    target = torch.arange(2 * n, device=scores.device)
    loss = (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target)) / 2
    return loss, (top_choice(scores) == target).float().mean()


LOSS_FNS = {"mcq": mcq_loss, "paired": paired_loss}


def planned_steps(trainer: L.Trainer) -> float:
    """Optimizer steps the run plans: Lightning's estimate, or for a stream without a length
    (shards: an epoch ends where the stream ends) the DataModule's expected batches per epoch
    (``train_batches_per_epoch()``, from the manifest) x ``max_epochs``, capped by ``max_steps``."""
    est = float(trainer.estimated_stepping_batches)
    per_epoch = getattr(trainer.datamodule, "train_batches_per_epoch", lambda: None)()
    if math.isfinite(est) or per_epoch is None or trainer.max_epochs in (None, -1):
        return est
    steps = math.ceil(per_epoch / trainer.accumulate_grad_batches) * trainer.max_epochs
    return float(min(steps, trainer.max_steps) if trainer.max_steps not in (None, -1) else steps)


class DCSMModule(L.LightningModule):
    """Trains a :class:`DCSM` (frozen CLIP + head) with the configured loss.

    Args:
        cfg: the full run config (plain dict or DictConfig); saved as hyper-parameters.
        categories: names of the ``category`` indices in batches (per-category metrics).
        val_names: names of the validation dataloaders, in order.
        encoder: an already-built encoder to share (e.g. with a feature-caching DataModule);
            built from ``cfg["encoder"]`` when omitted.
        model: a ready :class:`DCSM` (then ``encoder`` is ignored); built with
            :func:`~dcsm.model.dcsm.build_dcsm` when omitted.
    """

    def __init__(
        self,
        cfg: DictConfig | dict,
        categories: Sequence[str] = (),
        val_names: Sequence[str] = ("val",),
        encoder: FrozenCLIP | None = None,
        model: DCSM | None = None,
    ) -> None:
        super().__init__()
        cfg = to_plain(cfg)
        self.save_hyperparameters({"cfg": cfg, "categories": list(categories), "val_names": list(val_names)}, logger=False)
        self.cfg = cfg
        if cfg["loss"]["kind"] not in LOSSES:
            raise ValueError(f"unknown loss.kind '{cfg['loss']['kind']}'. Fix: use one of {LOSSES}.")
        self.model = model if model is not None else build_dcsm(cfg, encoder)
        self.categories = tuple(categories)
        self.val_names = tuple(val_names)
        self.strict_loading = False  # the frozen encoder is rebuilt, not loaded
        self._val_stats: dict[int, torch.Tensor] = {}
        self._val_loss: dict[int, torch.Tensor] = {}
        self.samples_seen = 0  # this rank's training samples; restored on resume
        self.compiled = False  # compile.head took effect (configure_model)

    @property
    def encoder(self) -> FrozenCLIP:
        return self.model.encoder

    @property
    def head(self) -> DCSMHead:
        return self.model.head

    def configure_model(self) -> None:
        """Lightning's hook once the device is known: ``compile.head`` (off by default on CPU)."""
        c = self.cfg.get("compile") or {}
        device = self.trainer.strategy.root_device if self._trainer is not None else self.device
        self.compiled = compile_head(self.head, c.get("head", False), c.get("mode", "default"), device)

    # ------------------------------------------------------------- steps
    def forward(self, batch: dict[str, Any] | FeatureBatch) -> torch.Tensor:
        """Scores ``(N, K)`` of a raw or feature batch."""
        return self.model(batch)

    def training_step(self, batch: dict[str, Any] | FeatureBatch, batch_idx: int) -> torch.Tensor:
        f = self.model.features(batch)
        loss, acc = LOSS_FNS[self.cfg["loss"]["kind"]](self.model, f)
        n = len(f)
        self.samples_seen += n
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/acc", acc, prog_bar=True, batch_size=n)
        return loss

    def on_train_epoch_end(self) -> None:
        # Shard streams skip corrupt samples; their loss is a number every run shows (all epochs so far).
        skips = getattr(getattr(self.trainer, "datamodule", None), "skips", None)
        if skips is not None:
            self.log("data/lost_samples", float(skips.lost_samples), reduce_fx="sum", sync_dist=True)
            self.log("data/skip_events", float(skips.count), reduce_fx="sum", sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._val_stats = {}
        self._val_loss: dict[int, torch.Tensor] = {}  # [sum of losses, samples] per loader

    def validation_step(self, batch: dict[str, Any] | FeatureBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        scores = score_batch(self.model, batch, to_cpu=False)
        dcsm, clip, label = scores["dcsm"], scores["clip"], scores["label"]
        loss = F.cross_entropy(dcsm, label, reduction="sum")
        # summed here and reduced over ranks once at epoch end (ranks may score different numbers
        # of batches; no per-step collective that a rank without a batch would never join)
        prev_loss = self._val_loss.get(dataloader_idx)
        pair = torch.stack([loss.detach().float(), torch.tensor(float(len(dcsm)), device=loss.device)])
        self._val_loss[dataloader_idx] = pair if prev_loss is None else prev_loss + pair
        # (categories + 1, 3) sums of [n, dcsm correct, clip correct]; last row = all; a tie counts wrong
        n_cat = max(len(self.categories), 1)
        cat = scores.get("category", torch.zeros_like(label))
        cat = cat if len(self.categories) else torch.zeros_like(cat)
        hits = torch.stack(
            [torch.ones_like(dcsm[:, 0]), (top_choice(dcsm) == label).float(), (top_choice(clip) == label).float()], dim=1
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
            loss = self.trainer.strategy.reduce(self._val_loss.get(idx, torch.zeros(2, device=self.device)), reduce_op="sum")
            if loss[1] > 0:
                self.log(f"{name}/loss", loss[0] / loss[1], add_dataloader_idx=False, sync_dist=False)
            names = [*(self.categories or ()), "all"] if self.categories else ["", "all"]
            for row, cat in zip(stats, names):
                if not cat or row[0] == 0:
                    continue
                suffix = "" if cat == "all" else f"_{cat}"
                self.log(f"{name}/acc{suffix}", row[1] / row[0], add_dataloader_idx=False, sync_dist=False)
                self.log(f"{name}/clip_acc{suffix}", row[2] / row[0], add_dataloader_idx=False, sync_dist=False)
        self._val_stats, self._val_loss = {}, {}

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
                est = planned_steps(self.trainer)
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
        head_state(checkpoint["state_dict"], "checkpoint", self.model)  # raises when head weights are missing

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Head only, as ``head.*``: the frozen encoder is rebuilt from its spec, never saved."""
        sd = super().state_dict(*args, **kwargs)
        keep = MODEL_PREFIX + HEAD_PREFIX
        return type(sd)((k[len(MODEL_PREFIX):], v) for k, v in sd.items() if k.startswith(keep))

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, **kwargs: Any) -> Any:
        """Inverse of :meth:`state_dict` (the encoder's weights are not in it, hence never strict)."""
        ours = {MODEL_PREFIX + k: v for k, v in state_dict.items() if k.startswith(HEAD_PREFIX)}
        return super().load_state_dict(ours, strict=False, **kwargs)


def load_module(path: str, map_location: str | torch.device = "cpu", encoder: FrozenCLIP | None = None) -> DCSMModule:
    """A checkpoint (ours or the authors', see :mod:`dcsm.checkpoints.load`) as a :class:`DCSMModule`;
    the encoder is rebuilt from the stored spec (or the given one is used)."""
    loaded = load_checkpoint(path, map_location, encoder)
    hp = loaded.hyper_parameters
    module = DCSMModule(
        loaded.cfg, categories=hp.get("categories", ()), val_names=hp.get("val_names", ("val",)), model=loaded.model
    )
    module.samples_seen = int(loaded.extra.get("samples_seen", 0))
    return module.eval()
