"""Training throughput: live encoding (raw image shards) vs cached frozen features (feature shards).

Both paths run the same code as ``train.py``: the shard DataModule's loader and
``DCSMModule.training_step`` + AdamW step; only ``data.source`` differs. A *pair* is one
(image, caption option) scored and back-propagated: pairs/s = samples/s x options.

    python benchmarks/train_throughput.py                       # CPU, random-init ViT-B-32
    python benchmarks/train_throughput.py --device cuda --model ViT-B-16 --samples 2048 --batch-size 128

Writes the table to stdout and (atomically) to ``benchmarks/RESULTS.md`` under a heading
naming the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_prep.cache_features import cache_shards  # noqa: E402
from data_prep.make_synthetic_shards import main as make_synthetic_shards  # noqa: E402
from dcsm.config import apply_overrides, load_yaml  # noqa: E402
from dcsm.data.shard_module import ShardDataConfig, ShardDataModule  # noqa: E402
from dcsm.encoders import EncoderSpec, FrozenCLIP  # noqa: E402
from dcsm.io import atomic_write_text  # noqa: E402
from dcsm.lit import DCSMModule, to_plain  # noqa: E402

RESULTS = REPO / "benchmarks" / "RESULTS.md"
WARMUP_BATCHES = 2


def measure(module: DCSMModule, loader, device: torch.device, max_batches: int) -> tuple[float, int]:
    """Seconds and samples for up to ``max_batches`` training steps after a warm-up."""
    opt = torch.optim.AdamW(module.head.parameters(), lr=1e-3)
    module.train()
    module.log = lambda *a, **k: None  # no trainer attached: logging is not what we time
    seen, start = 0, None
    for i, batch in enumerate(loader):
        if i == WARMUP_BATCHES:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, seen = time.perf_counter(), 0
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        loss = module.training_step(batch, i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(batch["label"])
        if i + 1 >= WARMUP_BATCHES + max_batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    if start is None:
        raise SystemExit("too few batches: raise --samples or lower --batch-size")
    return time.perf_counter() - start, seen


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--pretrained", default=None, help="open_clip tag or file; default: random init")
    p.add_argument("--samples", type=int, default=192)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-batches", type=int, default=4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workdir", default=None, help="where shards go (default: a temp dir)")
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    device = torch.device(args.device)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dcsm-bench-"))
    spec = EncoderSpec(model=args.model, pretrained=args.pretrained, max_tokens=20)
    encoder = FrozenCLIP(spec).to(device)
    make_synthetic_shards(["--out", str(work / "raw"), "--num-samples", str(args.samples), "--samples-per-shard", "64"])
    raw = sorted(str(x) for x in (work / "raw").glob("shard-*.tar"))
    t0 = time.perf_counter()
    cache_shards(encoder, raw, work / "feat", batch_size=args.batch_size)
    cache_s = time.perf_counter() - t0

    cfg = to_plain(apply_overrides(load_yaml(REPO / "configs" / "smoke_random.yaml"), [
        f"encoder.model={args.model}", "encoder.max_tokens=20",
    ]))
    cfg["encoder"]["pretrained"] = args.pretrained
    module = DCSMModule(cfg, encoder=encoder).to(device)
    rows = []
    for source, urls in (("live encoding (image shards)", work / "raw"), ("cached features (feature shards)", work / "feat")):
        dm = ShardDataModule(ShardDataConfig(
            source="shards" if "live" in source else "features", train_shards=str(urls),
            shuffle_buffer=0, batch_size=args.batch_size, num_workers=0,
        ), encoder)
        dm.setup("fit")
        secs, n = measure(module, dm.train_dataloader(), device, args.max_batches)
        k = cfg["data"]["num_options"]
        rows.append((source, n, secs, n / secs, n * k / secs))
    speedup = rows[1][3] / rows[0][3]
    lines = [
        f"### {machine()} — {args.model} ({args.pretrained or 'random init'}), batch {args.batch_size}, "
        f"{cfg['data']['num_options']} options",
        "",
        "| path | samples timed | seconds | samples/s | pairs/s |",
        "|---|---:|---:|---:|---:|",
        *[f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.1f} | {r[4]:.1f} |" for r in rows],
        "",
        f"Cached training is **{speedup:.0f}x** the pairs/s of live encoding (target >= 20x). "
        f"Caching {args.samples} samples once took {cache_s:.1f} s.",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        header = "# Benchmarks\n\nFigures written by the scripts in this folder; each section names its machine.\n\n## train_throughput.py\n\n"
        old = RESULTS.read_text() if RESULTS.is_file() else header
        sections = old.split("\n### ")
        kept = [sec for sec in sections[1:] if not ("### " + sec).startswith(lines[0])]  # same setting: replace
        atomic_write_text(RESULTS, "\n### ".join([sections[0].rstrip("\n") + "\n", *kept]).rstrip("\n") + "\n\n" + table)
    return table


if __name__ == "__main__":
    main()
