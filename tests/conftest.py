"""Shared fixtures: one random-init ViT-B-32 per test session (building one takes seconds)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dcsm.model.encoders import EncoderSpec, FrozenCLIP

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
TINY_SPEC = EncoderSpec(model="ViT-B-32", pretrained=None, max_tokens=20, seed=0)


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    # OMP_NUM_THREADS=1 when test jobs share the 2 cores (see DEVELOPERS: oversubscription)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


@pytest.fixture(autouse=True)
def _fresh_wandb_settings():
    """wandb keeps one settings singleton per process, read from the environment when first
    created; a test that changes WANDB_MODE must not leak the mode into the next one."""
    yield
    import sys

    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()


@pytest.fixture(scope="session")
def encoder() -> FrozenCLIP:
    return FrozenCLIP(TINY_SPEC)


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED_FIXTURES} (CI clones the repo with shared/ beside it)")
    return SHARED_FIXTURES
