"""Scoring in your own code: ``dcsm.load(checkpoint)`` -> :class:`Scorer`.

::

    import dcsm
    scorer = dcsm.load("runs/x/checkpoints/best.ckpt")          # cuda if available
    s = scorer.score([img1, img2], ["a dog left of a cat", "a cat left of a dog"])   # (2, 2)
    s = scorer.score_options([img1, img2], [["a red cube", "a blue cube"], ["...", "..."]])  # (2, K)
    m = scorer.maps([img1], [["a dog left of a cat"]])          # (1, 1, L, P) maps
    h = scorer.heatmaps([img1], [["a dog left of a cat"]])      # (1, 1, gh, gw) patch-grid heatmaps

Images are PIL images, file paths, or tensors already transformed with ``scorer.preprocess``
(``(3, H, W)`` each or one ``(B, 3, H, W)`` batch). Scores are the ones ``evaluate.py`` computes
for the same checkpoint and rows: the same :class:`~dcsm.model.dcsm.DCSM` forward on the same
preprocessed images and options. Work is batched (``batch_size`` images, ``caption_chunk``
captions at a time for :meth:`Scorer.score`), runs on the scorer's device, and returns CPU
float32 tensors. This module imports neither Lightning nor the training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import torch
from PIL import Image

from .checkpoints.load import load_dcsm
from .model.batch import FeatureBatch
from .model.dcsm import DCSM
from .model.device import AUTO_DEVICE, default_device
from .model.heatmaps import spatial_heatmap

__all__ = ["Scorer", "load", "DEFAULT_BATCH_SIZE", "DEFAULT_CAPTION_CHUNK"]

#: Images per forward pass.
DEFAULT_BATCH_SIZE = 32
#: Captions scored against one image batch at once in :meth:`Scorer.score` (bounds map memory:
#: batch x chunk x L x P floats).
DEFAULT_CAPTION_CHUNK = 64

ImageLike = Union[Image.Image, str, Path, torch.Tensor]


class Scorer:
    """A loaded DCSM model with batched, device-aware scoring of images against captions.

    Args:
        model: the :class:`~dcsm.model.dcsm.DCSM` (e.g. from :func:`dcsm.checkpoints.load.load_dcsm`).
        cfg: its config (kept for inspection as :attr:`cfg`).
        device: ``auto`` (cuda if available, else cpu) or a torch device name.
        batch_size: images per forward pass.
        caption_chunk: captions per pass in :meth:`score`.
    """

    def __init__(self, model: DCSM, cfg: dict | None = None, *, device: str | torch.device = AUTO_DEVICE,
                 batch_size: int = DEFAULT_BATCH_SIZE, caption_chunk: int = DEFAULT_CAPTION_CHUNK) -> None:
        if batch_size < 1 or caption_chunk < 1:
            raise ValueError(f"batch_size and caption_chunk must be >= 1, got {batch_size} and {caption_chunk}.")
        self.model = model.eval()
        self.cfg = cfg or {}
        self.batch_size = int(batch_size)
        self.caption_chunk = int(caption_chunk)
        self.to(device)

    # ------------------------------------------------------------------ setup
    def to(self, device: str | torch.device) -> "Scorer":
        """Move the model (encoder and head) to ``device`` (``auto``: cuda if available)."""
        self.device = torch.device(default_device(str(device)) if isinstance(device, str) else device)
        self.model.to(self.device)
        return self

    @property
    def preprocess(self) -> Any:
        """The encoder's image transform (PIL RGB -> ``(3, H, W)`` tensor)."""
        return self.model.encoder.preprocess

    def images_tensor(self, images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
        """PIL images / paths / tensors -> one preprocessed ``(B, 3, H, W)`` batch (on CPU)."""
        if isinstance(images, torch.Tensor):
            if images.dim() == 3:
                return images.unsqueeze(0)
            if images.dim() != 4:
                raise ValueError(f"image tensor must be (3, H, W) or (B, 3, H, W), got shape {tuple(images.shape)}.")
            return images
        if isinstance(images, (Image.Image, str, Path)):
            images = [images]
        out = []
        for i, im in enumerate(images):
            if isinstance(im, torch.Tensor):
                if im.dim() != 3:
                    raise ValueError(f"image {i}: a tensor image must be (3, H, W), got shape {tuple(im.shape)}.")
                out.append(im)
                continue
            if isinstance(im, (str, Path)):
                if not Path(im).is_file():
                    raise FileNotFoundError(f"image {i}: '{im}' does not exist. Fix: give an existing image file.")
                with Image.open(im) as f:
                    im = f.convert("RGB")
            if not isinstance(im, Image.Image):
                raise ValueError(f"image {i}: expected a PIL image, a path or a tensor, got {type(im).__name__}.")
            out.append(self.preprocess(im.convert("RGB")))
        if not out:
            raise ValueError("no images given. Fix: pass at least one image.")
        return torch.stack(out)

    @staticmethod
    def _options(options: Sequence[Sequence[str]], n: int) -> list[list[str]]:
        """Validate N lists of K caption strings (one list per image, same K)."""
        if isinstance(options, str) or len(options) != n:
            raise ValueError(f"options_per_image must hold one list of captions per image: {n} lists, "
                             f"got {'a string' if isinstance(options, str) else len(options)}.")
        opts = [[options[i]] if isinstance(options[i], str) else list(options[i]) for i in range(n)]
        ks = sorted({len(o) for o in opts})
        if len(ks) != 1 or ks[0] == 0:
            raise ValueError(f"every image needs the same number (>= 1) of caption options, got {ks}. "
                             "Fix: score groups with the same K separately.")
        for i, o in enumerate(opts):
            bad = [j for j, c in enumerate(o) if not isinstance(c, str)]
            if bad:
                raise ValueError(f"image {i}: option {bad[0]} is {type(o[bad[0]]).__name__}, not a string.")
        return opts

    @staticmethod
    def _captions(captions: Sequence[str]) -> list[str]:
        if isinstance(captions, str):
            captions = [captions]
        caps = list(captions)
        if not caps or not all(isinstance(c, str) for c in caps):
            raise ValueError("captions must be a non-empty list of strings.")
        return caps

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score_options(self, images: ImageLike | Sequence[ImageLike], options_per_image: Sequence[Sequence[str]]) -> torch.Tensor:
        """DCSM scores ``(B, K)`` of each image's own K options (the benchmarks' multiple choice)."""
        x = self.images_tensor(images)
        opts = self._options(options_per_image, len(x))
        out = [self.model(x[s : s + self.batch_size].to(self.device), opts[s : s + self.batch_size]).float().cpu()
               for s in range(0, len(x), self.batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def score(self, images: ImageLike | Sequence[ImageLike], captions: Sequence[str]) -> torch.Tensor:
        """DCSM scores ``(B, C)`` of every image against every caption.

        Each image batch and each caption chunk is encoded once; every image then scores the
        chunk as its options (the same forward as :meth:`score_options`)."""
        x = self.images_tensor(images)
        caps = self._captions(captions)
        enc = self.model.encoder
        rows = []
        for s in range(0, len(x), self.batch_size):
            img = enc.encode_images(x[s : s + self.batch_size].to(self.device))
            b = img.patches.shape[0]
            cols = []
            for c in range(0, len(caps), self.caption_chunk):
                txt = enc.encode_texts(caps[c : c + self.caption_chunk])
                k = txt.tokens.shape[0]
                f = FeatureBatch(  # every image's options = the chunk (expanded views, no copies)
                    patches=img.patches, image_pooled=img.pooled,
                    tokens=txt.tokens.unsqueeze(0).expand(b, k, *txt.tokens.shape[1:]),
                    token_mask=txt.mask.unsqueeze(0).expand(b, k, -1),
                    token_ids=txt.ids.unsqueeze(0).expand(b, k, -1),
                    text_pooled=txt.pooled.unsqueeze(0).expand(b, k, -1),
                )
                cols.append(self.model(f).float().cpu())
            rows.append(torch.cat(cols, dim=1))
        return torch.cat(rows)

    @torch.no_grad()
    def clip_score_options(self, images: ImageLike | Sequence[ImageLike], options_per_image: Sequence[Sequence[str]]) -> torch.Tensor:
        """The same encoder's pooled baseline ``(B, K)`` (the ``clip`` column of evaluate.py): cosine, or
        SigLIP's ``logit_scale * cos + logit_bias`` (``encoder.towers["baseline_logit"]``)."""
        x = self.images_tensor(images)
        opts = self._options(options_per_image, len(x))
        out = [self.model.baseline_scores(self.model.encode(x[s : s + self.batch_size].to(self.device), opts[s : s + self.batch_size])).cpu()
               for s in range(0, len(x), self.batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def maps(self, images: ImageLike | Sequence[ImageLike], options_per_image: Sequence[Sequence[str]]) -> torch.Tensor:
        """The similarity maps the head scores: ``(B, K, L, P)`` fp32 (token rows x patch columns;
        P includes CLS with ``encoder.keep_cls``)."""
        x = self.images_tensor(images)
        opts = self._options(options_per_image, len(x))
        out = [self.model.maps(x[s : s + self.batch_size].to(self.device), opts[s : s + self.batch_size]).cpu()
               for s in range(0, len(x), self.batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def heatmaps(self, images: ImageLike | Sequence[ImageLike], options_per_image: Sequence[Sequence[str]]) -> torch.Tensor:
        """Patch-grid heatmaps ``(B, K, gh, gw)``: each option's map averaged over its real token
        rows (functional-word rows left out when others remain), CLS column dropped: one
        :func:`dcsm.model.heatmaps.spatial_heatmap` per option; render one with
        :func:`dcsm.model.heatmaps.render_heatmap`."""
        x = self.images_tensor(images)
        opts = self._options(options_per_image, len(x))
        enc, head = self.model.encoder, self.model.head
        out = []
        for s in range(0, len(x), self.batch_size):
            f = self.model.encode(x[s : s + self.batch_size].to(self.device), opts[s : s + self.batch_size])
            m = head.fp32_maps(f.patches, f.tokens, f.token_mask, f.token_ids)  # (b, K, L, P)
            fr = head.functional_rows.index(f.token_ids) >= 0 if head.map_cfg.inject_functional_rows else None
            out.append(torch.stack([
                torch.stack([
                    torch.from_numpy(spatial_heatmap(m[b, k], f.token_mask[b, k], enc.grid_size, enc.spec.keep_cls,
                                                     None if fr is None else fr[b, k]))
                    for k in range(m.shape[1])
                ])
                for b in range(m.shape[0])
            ]))
        return torch.cat(out)


def load(checkpoint: str | Path, device: str | torch.device = AUTO_DEVICE, *, batch_size: int = DEFAULT_BATCH_SIZE,
         caption_chunk: int = DEFAULT_CAPTION_CHUNK) -> Scorer:
    """A checkpoint (our ``.ckpt`` from ``train.py`` or the authors' released pickle) -> :class:`Scorer`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a DCSM checkpoint.
    """
    model, cfg = load_dcsm(str(checkpoint))
    return Scorer(model, cfg, device=device, batch_size=batch_size, caption_chunk=caption_chunk)
