"""Speed of the exact head decomposition (dcsm.diagnostics.decomposition) vs a plain image forward.

Random-init open_clip model (weights do not change the cost), random preprocessed images, fp32.
Times, per image count: the plain ``visual`` forward, ``decompose(per_token=True)`` (terms per
layer x head x token, ``(B, L, H, T, D)``) and ``decompose(per_token=False)`` (``(B, L, H, D)``).
Outputs stay on the device (consumers reduce them there); the reconstruction error of each
batch is checked against the plain forward.

    python benchmarks/decomposition_speed.py --device cuda --out decomposition_speed.json   # ViT-B-16, 1,000 images
    python benchmarks/decomposition_speed.py --tiny --out /tmp/tiny.json                    # CPU smoke (seconds)

Prints a JSON line and writes it to ``--out``. Imports only torch, open_clip and dcsm (no
lightning, no wandb).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcsm.diagnostics.decomposition import decompose  # noqa: E402
from dcsm.encoders import EncoderSpec, FrozenCLIP  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-B-16")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", required=True, help="JSON output path")
    p.add_argument("--tiny", action="store_true", help="CPU smoke mode: a 3-layer 64 px ViT, 4 images, batch 2")
    args = p.parse_args(argv)
    if args.tiny:
        args.model, args.images, args.batch_size, args.device = _tiny_model(), 4, 2, "cpu"
    return args


def _tiny_model() -> str:
    """Register a small open_clip ViT config (3 layers, width 96, 64 px) and return its name."""
    import tempfile

    import open_clip

    name = "dcsm-bench-tiny-ViT"
    cfg = {"embed_dim": 48, "vision_cfg": {"image_size": 64, "layers": 3, "width": 96, "head_width": 32, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2}}
    path = Path(tempfile.mkdtemp()) / f"{name}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return name


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


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    device = torch.device(args.device)
    enc = FrozenCLIP(EncoderSpec(model=args.model, pretrained=None, seed=0)).to(device)
    visual = enc.model.visual
    H, W = enc.image_size
    gen = torch.Generator(device=device).manual_seed(0)
    n_batches = -(-args.images // args.batch_size)
    batches = [torch.randn(min(args.batch_size, args.images - i * args.batch_size), 3, H, W, device=device, generator=gen)
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
        "model": args.model, "pretrained": None, "images": args.images, "batch_size": args.batch_size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.machine()}",
        "torch": torch.__version__, "dtype": "float32", "threads": torch.get_num_threads(),
        "plain_forward_s": round(t_plain, 3),
        "decompose_per_token_s": round(t_tok - t_plain, 3),
        "decompose_per_head_s": round(t_sum - t_plain, 3),
        "decompose_per_token_images_per_s": round(args.images / max(t_tok - t_plain, 1e-9), 1),
        "max_relative_error_per_token": err_tok, "max_relative_error_per_head": err_sum,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
    }
    text = json.dumps(result)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
