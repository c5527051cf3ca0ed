"""Shared fixtures: one frozen encoder per test session — the shipped small CLIP (``dcsm-toy-ViT``,
9M parameters, 96 px), loaded from the package's own weights: no download, and a fraction of a
random-init ViT-B-32's time per image. Tests that need a standard open_clip architecture build
their own (``VIT_B32_SPEC``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dcsm.model.encoders import EncoderSpec, FrozenCLIP

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
TINY_SPEC = EncoderSpec(model="dcsm-toy-ViT", pretrained="toy", max_tokens=20, seed=0)
# a random-init open_clip architecture, for tests about open_clip models themselves
VIT_B32_SPEC = EncoderSpec(model="ViT-B-32", pretrained=None, max_tokens=20, seed=0)
#: TINY_SPEC as command-line overrides, for tests that run the commands
TINY_OVERRIDES = [f"encoder.model={TINY_SPEC.model}", f"encoder.pretrained={TINY_SPEC.pretrained}",
                  f"encoder.max_tokens={TINY_SPEC.max_tokens}", f"encoder.seed={TINY_SPEC.seed}"]


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
def vit_b32_encoder() -> FrozenCLIP:
    """A random-init open_clip ViT-B-32: for tests about open_clip's own towers (block count,
    224 px, hook names, checkpoint formats)."""
    return FrozenCLIP(VIT_B32_SPEC)


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED_FIXTURES} (CI clones the repo with shared/ beside it)")
    return SHARED_FIXTURES
