"""The device a model runs on: ``auto`` (or None) -> ``cuda`` when available, else ``cpu``."""

from __future__ import annotations

import torch


AUTO_DEVICE = "auto"


def default_device(device: str | None = AUTO_DEVICE) -> str:
    """``auto`` (or None) -> ``cuda`` when available, else ``cpu``; any other name as given."""
    if device in (None, AUTO_DEVICE):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)
