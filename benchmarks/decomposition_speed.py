"""Speed of the exact head decomposition (dcsm.diagnostics.decomposition) vs a plain image forward.

Random-init open_clip model (weights do not change the cost), random preprocessed images, fp32.
Times, per image count: the plain ``visual`` forward, ``decompose(per_token=True)`` (terms per
layer x head x token, ``(B, L, H, T, D)``) and ``decompose(per_token=False)`` (``(B, L, H, D)``).
Outputs stay on the device (consumers reduce them there); the reconstruction error of each
batch is checked against the plain forward.

    python benchmarks/decomposition_speed.py bench.output=decomposition_speed.json   # ViT-B-16, 1,000 images
    python benchmarks/decomposition_speed.py --config benchmarks/decomposition_speed_tiny.yaml \
        bench.output=/tmp/tiny.json                                                  # CPU smoke (seconds)

Settings: ``bench:`` of ``benchmarks/decomposition_speed.yaml`` (``--config FILE``, ``key=value``).
Prints a JSON line and writes it to ``bench.output``. Imports only torch, open_clip and dcsm (no
lightning, no wandb).
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

from dcsm.diagnostics.decomposition import decompose
from dcsm.model.encoders import EncoderSpec, FrozenCLIP
from dcsm.commands.runner import command_config, run_command
from dcsm.model.device import default_device

DEFAULT_CONFIG = Path(__file__).resolve().parent / "decomposition_speed.yaml"


def bench_settings(argv: Sequence[str] | None = None) -> dict:
    """``[--config FILE] [key=value ...]`` -> the ``bench:`` section (``decomposition_speed.yaml``
    when no ``--config``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    b = command_config(args, default=DEFAULT_CONFIG).get("bench")
    if not isinstance(b, dict):
        raise ValueError(f"the config has no bench: section. Fix: use {DEFAULT_CONFIG.name} or a YAML with 'base: {DEFAULT_CONFIG.name}'.")
    if not b["output"]:
        raise ValueError("no output file. Fix: bench.output=PATH.json.")
    if int(b["images"]) < 1 or int(b["batch_size"]) < 1:
        raise ValueError(f"bench.images and bench.batch_size must be >= 1, got {b['images']}, {b['batch_size']}.")
    return b


def register_model_config(name: str, model_cfg: dict) -> None:
    """Make ``model_cfg`` (an open_clip model config: embed_dim, vision_cfg, text_cfg) known to
    open_clip as ``name`` (random init only: there are no weights for it)."""
    import open_clip

    path = Path(tempfile.mkdtemp()) / f"{name}.json"
    path.write_text(json.dumps(model_cfg))
    open_clip.add_model_config(path)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, batches: list[torch.Tensor], device: torch.device) -> tuple[float, float]:
    """(seconds over all batches, worst relative reconstruction error or nan)."""
    fn(batches[0])  # warm-up: kernels, allocator
    _sync(device)
    worst = 0.0
    start = time.perf_counter()
    for x in batches:
        err = fn(x)
        worst = max(worst, err)
    _sync(device)
    return time.perf_counter() - start, worst


def main(argv: Sequence[str] | None = None) -> dict:
    b = bench_settings(argv)
    if b["model_config"]:
        register_model_config(b["model"], b["model_config"])
    device = torch.device(default_device(b["device"]))
    n_images, batch_size = int(b["images"]), int(b["batch_size"])
    enc = FrozenCLIP(EncoderSpec(model=b["model"], pretrained=None, seed=b["seed"])).to(device)
    visual = enc.model.visual
    H, W = enc.image_size
    gen = torch.Generator(device=device).manual_seed(b["seed"])
    n_batches = -(-n_images // batch_size)
    batches = [torch.randn(min(batch_size, n_images - i * batch_size), 3, H, W, device=device, generator=gen)
               for i in range(n_batches)]

    @torch.no_grad()
    def plain(x: torch.Tensor) -> float:
        visual(x)
        return 0.0

    def decomp(per_token: bool):
        @torch.no_grad()
        def run(x: torch.Tensor) -> float:
            d = decompose(enc, x, per_token=per_token)
            ref = visual(x)[0]
            return float(((d.total() - ref).norm(dim=-1) / ref.norm(dim=-1)).max())
        return run

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_plain, _ = _time(plain, batches, device)
    t_tok, err_tok = _time(decomp(True), batches, device)
    t_sum, err_sum = _time(decomp(False), batches, device)
    # the error check re-runs a plain forward per batch: subtract it for the decomposition's own time
    result = {
        "model": b["model"], "pretrained": None, "images": n_images, "batch_size": batch_size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.machine()}",
        "torch": torch.__version__, "dtype": "float32", "threads": torch.get_num_threads(),
        "plain_forward_s": round(t_plain, 3),
        "decompose_per_token_s": round(t_tok - t_plain, 3),
        "decompose_per_head_s": round(t_sum - t_plain, 3),
        "decompose_per_token_images_per_s": round(n_images / max(t_tok - t_plain, 1e-9), 1),
        "max_relative_error_per_token": err_tok, "max_relative_error_per_head": err_sum,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
    }
    text = json.dumps(result)
    print(text)
    out = Path(b["output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    run_command(main)
