"""TextSpan per head: which texts span the directions a head writes into the image embedding.

For one head, ``X (N, D)`` are its direct contributions over an image set (from the
decomposition), centred over images. Texts ``(M, D)`` (unit-norm CLIP text embeddings) are first
projected onto the span of the head's top ``span_rank`` principal directions. Then ``m`` times:
pick the text whose (projected, unnormalised) vector has the largest variance of ``X @ t`` over
images; its unit vector ``u`` is the step's direction; remove ``u`` from ``X`` and from every
remaining text. The directions are orthonormal.

Reported per step: ``variance`` — the share of the head's total variance along ``u`` — and
``remaining`` — the share left in ``X`` after removing ``u``, which never increases.
``variance`` itself need not decrease step by step: after a direction is removed, another text's
residual can point along variance that no original text reached (greedy over a finite bank).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

__all__ = ["SpanResult", "textspan", "textspan_heads", "text_bank", "load_text_bank", "TextBankError"]


class TextBankError(ValueError):
    """Text bank file missing or empty."""


@dataclass
class SpanResult:
    """TextSpan of one head.

    indices: chosen text indices, in order; variance, remaining: ``(m,)`` shares of the head's
    total variance (see module docstring); directions: ``(m, D)`` orthonormal; total_variance:
    the head's total variance over the image set (mean squared norm of centred outputs).
    """

    layer: int
    head: int
    indices: list[int]
    variance: torch.Tensor
    remaining: torch.Tensor
    directions: torch.Tensor
    total_variance: float
    texts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "layer": self.layer, "head": self.head, "total_variance": self.total_variance,
            "texts": self.texts, "indices": self.indices,
            "variance": [round(float(v), 6) for v in self.variance],
            "remaining": [round(float(v), 6) for v in self.remaining],
        }


@torch.no_grad()
def textspan(outputs: torch.Tensor, texts: torch.Tensor, m: int, span_rank: int | None = None) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Greedy TextSpan of one head.

    Args:
        outputs: ``(N, D)`` the head's contributions over N images.
        texts: ``(M, D)`` text embeddings.
        m: steps (texts to pick); fewer are returned when the span is exhausted.
        span_rank: principal directions of ``outputs`` the texts are projected onto (None: all).

    Returns:
        indices (m,), variance (m,), remaining (m,), directions (m, D), total variance.
    """
    X = outputs.double()
    X = X - X.mean(dim=0, keepdim=True)
    N = X.shape[0]
    total = float((X * X).sum() / N)
    _, S, Vh = torch.linalg.svd(X, full_matrices=False)
    rank = int((S > S.max() * 1e-6).sum()) if S.numel() and S.max() > 0 else 0
    if span_rank is not None:
        rank = min(rank, span_rank)
    basis = Vh[:rank]  # (r, D) orthonormal rows
    Xr = X @ basis.T  # (N, r): the head's outputs in span coordinates (exact: X lies in the span up to dropped rank)
    Tr = texts.double() @ basis.T  # (M, r): texts projected onto the span
    outside = total - float((Xr * Xr).sum() / N)  # variance beyond span_rank: never explained
    indices: list[int] = []
    var, rem, dirs = [], [], []
    for _ in range(min(m, rank)):
        scores = ((Xr @ Tr.T) ** 2).sum(dim=0)  # (M,) N * variance of X @ t
        j = int(scores.argmax())
        norm = Tr[j].norm()
        if norm < 1e-9:
            break
        u = Tr[j] / norm
        along = Xr @ u  # (N,)
        var.append(float((along * along).sum() / N) / max(total, 1e-300))
        Xr = Xr - along[:, None] * u[None]
        Tr = Tr - (Tr @ u)[:, None] * u[None]
        rem.append((float((Xr * Xr).sum() / N) + outside) / max(total, 1e-300))
        dirs.append(u @ basis)
        indices.append(j)
    D = outputs.shape[1]
    directions = torch.stack(dirs).float() if dirs else torch.zeros(0, D)
    return indices, torch.tensor(var), torch.tensor(rem), directions, total


def textspan_heads(
    head_outputs: torch.Tensor,
    text_embeddings: torch.Tensor,
    texts: list[str],
    m: int,
    span_rank: int | None = None,
    progress: bool = True,
) -> list[SpanResult]:
    """TextSpan of every head of ``head_outputs (N, L, H, D)``; results in (layer, head) order."""
    N, L, H, D = head_outputs.shape
    out = []
    for l in tqdm(range(L), desc="TextSpan (layers)", disable=not progress, leave=False):
        for h in range(H):
            idx, var, rem, dirs, total = textspan(head_outputs[:, l, h], text_embeddings, m, span_rank)
            out.append(SpanResult(l, h, idx, var, rem, dirs, total, [texts[i] for i in idx]))
    return out


def load_text_bank(path: str) -> list[str]:
    """One text per line (blank lines and ``#`` comments skipped); ``default`` = the shipped bank."""
    from pathlib import Path

    p = Path(__file__).parent / "data" / "text_bank.txt" if path == "default" else Path(path)
    if not p.is_file():
        raise TextBankError(f"text bank file '{p}' does not exist. Fix: set diagnostics.text_bank to a text file "
                            "with one description per line, or 'default'.")
    texts = [t.strip() for t in p.read_text(encoding="utf-8").splitlines()]
    texts = [t for t in texts if t and not t.startswith("#")]
    if not texts:
        raise TextBankError(f"text bank file '{p}' has no texts. Fix: one description per line.")
    return texts


@torch.no_grad()
def text_bank(encoder, texts: list[str], batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """``(M, D)`` unit-norm pooled text embeddings of the bank (batched through ``encode_texts``)."""
    chunks = [encoder.encode_texts(texts[i: i + batch_size]).pooled.float()
              for i in tqdm(range(0, len(texts), batch_size), desc="encoding text bank", disable=not progress, leave=False)]
    return torch.cat(chunks)
