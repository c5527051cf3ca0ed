"""Batched dense cosine similarity maps (DCSM).

Two pairings, one einsum each:
- ``all``: every image with every caption, patches ``(B, P, D)`` x tokens ``(C, L, D)`` ->
  ``(B, C, L, P)`` (retrieval, the reference's 2B x 2B training matrix);
- ``per_image``: image n with its own K options, ``(N, P, D)`` x ``(N, K, L, D)`` ->
  ``(N, K, L, P)`` (multiple choice).

Then functional rows replace the rows of functional words (one gather + where), padded rows
are zeroed, and maps are standardised per map (default: scores do not depend on what else is
in the batch) or over the whole batch (the reference's behaviour).
"""

from __future__ import annotations

import torch

STANDARDIZE_MODES = ("map", "row", "row_level", "image", "batch", "none")
PAIRINGS = ("all", "per_image")


def similarity(patches: torch.Tensor, tokens: torch.Tensor, pairing: str = "per_image") -> torch.Tensor:
    """Cosine maps; inputs are unit-norm. See module doc for shapes."""
    if pairing == "per_image":
        return torch.einsum("nkld,npd->nklp", tokens, patches)
    if pairing == "all":
        return torch.einsum("cld,bpd->bclp", tokens, patches)
    raise ValueError(f"unknown pairing '{pairing}'. Fix: use one of {PAIRINGS}.")


def inject_rows(maps: torch.Tensor, fr_index: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Replace functional-word rows.

    maps ``(..., L, P)``; fr_index ``(..., L)`` (trailing dims broadcast against maps' leading
    ones, -1 = keep); rows ``(E, P)``.
    """
    fr = rows.to(maps.dtype)[fr_index.clamp(min=0)]  # (..., L, P)
    return torch.where((fr_index >= 0).unsqueeze(-1), fr, maps)


def standardize(maps: torch.Tensor, mask: torch.Tensor, mode: str = "map", eps: float = 1e-6) -> torch.Tensor:
    """Z-score maps ``(..., L, P)`` over their real rows (mask ``(..., L)``); padded rows -> 0.

    ``map``: one mean/std per map; ``row``: one mean/std per row over the patch axis (keeps
    only *where* a token matches, which suits encoders whose patch embeddings share a large
    common component, e.g. random-init towers); ``row_level``: the row z-scores plus, per row, the
    row's peak as a z-score of the map's real rows (also keeps *whether* a token matches anywhere:
    "there is no N", a colour absent from the image); ``image``: one mean/std over all maps of an
    image ``(B, C, L, P)`` -> per b, pad rows included (the reference's evaluation, which
    scores one image against its options at a time); ``batch``: one mean/std over the whole tensor, padded rows
    included (the reference's behaviour); ``none``: only zero the padded rows. ``image`` and
    ``batch`` take their statistics over every row, as the reference does (its pad rows are real
    EOT rows, ``encoder.pad_rows=eot``, where the mask is all true); masked rows end up zero.
    """
    m = mask.unsqueeze(-1).to(maps.dtype)  # (..., L, 1)
    if mode == "map":
        mean, std = _map_stats(maps, m)
        maps = (maps - mean) / (std + eps)
    elif mode == "row":
        maps = _row_z(maps, eps)
    elif mode == "row_level":
        mean, std = _map_stats(maps, m)
        level = (maps.amax(dim=-1, keepdim=True) - mean) / (std + eps)  # (..., L, 1): the row's peak in the map
        maps = _row_z(maps, eps) + level
    elif mode == "image":
        flat = maps.flatten(1)
        shape = (-1,) + (1,) * (maps.dim() - 1)
        maps = (maps - flat.mean(1).view(shape)) / (flat.std(1).view(shape) + eps)  # unbiased, as the reference
    elif mode == "batch":
        maps = (maps - maps.mean()) / (maps.std() + eps)
    elif mode != "none":
        raise ValueError(f"unknown standardize mode '{mode}'. Fix: use one of {STANDARDIZE_MODES}.")
    return maps * m


def _map_stats(maps: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) std of each map ``(..., L, P)`` over its real rows (m ``(..., L, 1)``) ->
    two ``(..., 1, 1)`` tensors."""
    count = (m.sum(dim=(-2, -1), keepdim=True) * maps.shape[-1]).clamp(min=1)
    mean = (maps * m).sum(dim=(-2, -1), keepdim=True) / count
    var = (((maps - mean) * m) ** 2).sum(dim=(-2, -1), keepdim=True) / count
    return mean, var.sqrt()


def _row_z(maps: torch.Tensor, eps: float) -> torch.Tensor:
    """Each row ``(..., L, P)`` z-scored over the patch axis: *where* its token matches (a row with
    no match anywhere looks the same, which ``row_level``'s peak term adds back)."""
    return (maps - maps.mean(dim=-1, keepdim=True)) / (maps.std(dim=-1, unbiased=False, keepdim=True) + eps)


def build_maps(
    patches: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    fr_index: torch.Tensor | None,
    rows: torch.Tensor | None,
    *,
    pairing: str = "per_image",
    standardize_mode: str = "map",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Full map construction: cosine -> functional rows -> standardise/mask.

    Args:
        patches: ``(B, P, D)`` unit-norm patch embeddings.
        tokens: ``(C, L, D)`` for ``all`` or ``(B, K, L, D)`` for ``per_image``.
        mask: ``(C, L)`` / ``(B, K, L)`` real-token mask.
        fr_index: same shape as mask, functional entry per position (-1 none), or None.
        rows: ``(E, P)`` functional rows, or None to skip injection.
    Returns:
        ``(B, C, L, P)`` or ``(B, K, L, P)`` float maps.
    """
    maps = similarity(patches.to(tokens.dtype), tokens, pairing)
    if fr_index is not None and rows is not None:
        maps = inject_rows(maps, torch.where(mask, fr_index, -1), rows)  # never on padding
    return standardize(maps, mask, standardize_mode, eps)
