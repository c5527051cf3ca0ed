"""One cached sample's tensors as a safetensors member: no pickle to read, and ~10x faster to
decode than a ``torch.load(weights_only=True)`` zip (the map-shard profile in
``benchmarks/RESULTS.md``: the weights-only unpickler was 52% of reading a batch).

A member is the safetensors byte layout (8-byte little-endian header length, a JSON header,
the raw tensor bytes). Scalars that are not tensors (format version, record digest, checksum)
ride in the header's ``__metadata__`` (text to text).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..data.shards.format import SampleError

__all__ = ["decode_tensors", "encode_tensors"]

HEADER_LEN = struct.Struct("<Q")  # the safetensors header length prefix
MAX_HEADER_BYTES = 1 << 20  # a sample's header names a few tensors; more is a corrupt length


def encode_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> bytes:
    """``tensors`` (contiguous CPU copies are made) + ``metadata`` (values kept as text) -> bytes."""
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return save_safetensors(plain, metadata={k: str(v) for k, v in metadata.items()})


def decode_tensors(data: bytes, where: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Bytes of :func:`encode_tensors` -> (tensors, metadata); ``where`` names the member in errors.

    Raises:
        SampleError: truncated bytes, a header that is not safetensors JSON, or tensor bytes that
            do not match it (a corrupt or foreign member).
    """
    if len(data) < HEADER_LEN.size:
        raise SampleError(f"unreadable {where}: {len(data)} bytes, not a safetensors member")
    (size,) = HEADER_LEN.unpack_from(data)
    if size > min(MAX_HEADER_BYTES, len(data) - HEADER_LEN.size):
        raise SampleError(f"unreadable {where}: header length {size} exceeds the member ({len(data)} bytes)")
    try:
        header = json.loads(data[HEADER_LEN.size: HEADER_LEN.size + size])
        tensors = load_safetensors(data)
    except Exception as err:  # the Rust reader's errors have no common Python base
        raise SampleError(f"unreadable {where}: {type(err).__name__}: {err}") from None
    metadata = (header.get("__metadata__") or {}) if isinstance(header, dict) else {}
    return tensors, {str(k): str(v) for k, v in metadata.items()}
