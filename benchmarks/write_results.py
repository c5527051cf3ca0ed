"""Benchmark results: machine/version info, Markdown tables, and updating ``benchmarks/RESULTS.md``.

The benchmark scripts write a results JSON and call :func:`render` + :func:`update_results`
themselves. Results measured elsewhere (e.g. a GPU machine) are rendered from their JSON:

    python benchmarks/write_results.py RESULT.json [RESULT2.json ...] [--results benchmarks/RESULTS.md]

RESULTS.md layout: ``## <script>`` sections, each holding ``### <setting>`` subsections; a
subsection with the same heading line is replaced, others are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from dcsm.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
HEADER = "# Benchmarks\n\nFigures written by the scripts in this folder; each section names its machine and versions.\n"


# ----------------------------------------------------------------------------- machine


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # not installed as a distribution (e.g. on PYTHONPATH only)
        return None


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on: device name, cores, threads and library versions."""
    import lightning
    import open_clip

    info: dict[str, Any] = {
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": getattr(open_clip, "__version__", _version("open_clip_torch")),
        "lightning": lightning.__version__,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def machine_line(m: dict[str, Any]) -> str:
    """One line naming the machine: the GPU if one was used, else the CPU and its threads."""
    if m.get("gpu"):
        where = f"{m['gpu']} ({m.get('gpu_memory_gib', '?')} GiB), CUDA {m.get('cuda')}, {m['cpu_cores']} CPU cores"
    else:
        where = f"CPU {m['cpu']}, {m['cpu_cores']} cores, {m['torch_threads']} torch threads"
    return where


def versions_line(m: dict[str, Any]) -> str:
    return (f"python {m['python']}, torch {m['torch']}, open_clip {m['open_clip']}, lightning {m['lightning']}"
            + (f", driver {m['driver']}" if m.get("driver") else ""))


# ----------------------------------------------------------------------------- tables


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> list[str]:
    """Markdown table lines; ``align`` one char per column (l/r), default: first left, rest right."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    return [f"| {' | '.join(header)} |", f"| {' | '.join(sep)} |", *[f"| {' | '.join(_fmt(c) for c in r)} |" for r in rows]]


def render_score(res: dict[str, Any]) -> tuple[str, str, str]:
    """score_throughput JSON -> (section, heading, body)."""
    m, c = res["machine"], res["config"]
    heading = (f"{machine_line(m)} — batch {c['batch_size']} x {c['num_options']} options, "
               f"{c['pretrained'] or 'random init'}")
    rows = []
    for r in res["rows"]:
        if "error" in r:
            rows.append([r["model"], r["precision"], f"error: {r['error']}", "", "", "", ""])
            continue
        rows.append([r["model"], r["precision"], r["clip_pairs_s"], r["dcsm_pairs_s"], f"{r['ratio']:.2f}x",
                     r["head_pairs_s"], f"{r['clip_ms']:.1f} / {r['dcsm_ms']:.1f} / {r['head_ms']:.2f}"])
    body = table(["model", "precision", "(a) plain CLIP pairs/s", "(b) DCSM end to end pairs/s", "(b)/(a)",
                  "(c) head alone pairs/s", "ms per batch (a / b / c)"], rows)
    notes = [
        "",
        f"Median of {c['repeats']} timed repeats after {c['warmup']} warm-up runs, "
        f"{'CUDA-synchronised' if m.get('gpu') else 'wall clock'}; a pair is one (image, caption option). "
        "(a) open_clip `encode_image` + `encode_text` on the same images and all B x K captions "
        "(77-token context), normalised cosine; (b) `FrozenCLIP` patches + tokens (causal prefix up to the "
        "longest caption, identical captions encoded once) + the DCSM head; (c) the head on the cached "
        "(fp16) features of (b). bf16 = `torch.autocast(bfloat16)` around everything; the head builds "
        "its maps in fp32 either way and runs the CNN in bf16.",
    ]
    if res.get("notes"):
        notes += ["", *res["notes"]]
    notes += ["", f"Versions: {versions_line(m)}."]
    return "score_throughput.py", heading, "\n".join(body + notes)


def render_train(res: dict[str, Any]) -> tuple[str, str, str]:
    """train_throughput JSON -> (section, heading, body)."""
    m, c = res["machine"], res["config"]
    heading = f"{machine_line(m)} — {c['model']} ({c['pretrained'] or 'random init'}), {c['precision']}"
    rows = []
    for r in res["rows"]:
        if "error" in r:
            rows.append([r["path"], r.get("batch_size"), r.get("compile"), f"error: {r['error']}", "", "", "", ""])
            continue
        util = r.get("gpu_util_mean")
        rows.append([r["path"], r["batch_size"], "yes" if r["compile"] else "no", r["samples"], r["seconds"],
                     r["samples_s"], r["pairs_s"], "—" if util is None else f"{util:.0f}%"])
    lines = table(["path", "batch", "compiled head", "samples timed", "seconds", "samples/s", "pairs/s", "GPU util"], rows)
    lines += [
        "",
        f"{c['num_options']} options per sample; {c['num_workers']} loader workers; warm-up {c['warmup']} batches "
        "(compile time excluded). live: raw image shards decoded by the workers, CLIP run every step; "
        "cached: feature shards (fp16, `data_prep/cache_features.py`) streamed by the workers; resident: the same "
        "feature batches kept on the device (the head's own ceiling, no loader).",
    ]
    if res.get("cache_bytes"):
        lines += ["", *render_cache_bytes(res["cache_bytes"])]
    if res.get("notes"):
        lines += ["", *res["notes"]]
    lines += ["", f"Versions: {versions_line(m)}."]
    return "train_throughput.py", heading, "\n".join(lines)


def render_cache_bytes(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = table(
        ["model", "P x D", "opposite image", "bytes/sample (shard)", "bytes/sample (shapes, fp16)",
         "1M samples (fp16)", "1M samples (int8 patches)"],
        [[r["model"], f"{r['num_patches']} x {r['embed_dim']}", "yes" if r["with_opposite"] else "no",
          r.get("shard_bytes_per_sample"), r["fp16_bytes_per_sample"], f"{r['fp16_gb_per_million']:.0f} GB",
          f"{r['int8_gb_per_million']:.0f} GB"] for r in rows],
    )
    return ["Feature cache size (one sample = 1 image + its options; tokens stored for real rows only):", "", *out]


def render_run(res: dict[str, Any]) -> tuple[str, str, str]:
    """20k-scene training run JSON -> (section, heading, body)."""
    m = res["machine"]
    heading = f"{machine_line(m)} — {res['model']} (random init), {res['train_size']:,} scenes, {res['max_epochs']} epochs"
    rows = [[k, v] for k, v in res["figures"].items()]
    lines = table(["", "value"], rows, align="lr")
    if res.get("notes"):
        lines += ["", *res["notes"]]
    lines += ["", f"Versions: {versions_line(m)}."]
    return "train.py (configs/default.yaml)", heading, "\n".join(lines)


RENDERERS: dict[str, Callable[[dict[str, Any]], tuple[str, str, str]]] = {
    "score_throughput": render_score, "train_throughput": render_train, "train_run": render_run,
}


def render(res: dict[str, Any]) -> tuple[str, str, str]:
    kind = res.get("kind")
    if kind not in RENDERERS:
        raise ValueError(f"results JSON has kind {kind!r}; expected one of {sorted(RENDERERS)}.")
    return RENDERERS[kind](res)


# ----------------------------------------------------------------------------- RESULTS.md


def _split(text: str, marker: str) -> tuple[str, list[tuple[str, str]]]:
    """Text -> (preamble, [(heading line, block text incl. heading)]) for lines starting with ``marker``."""
    pre: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(marker):
            blocks.append((line, [line]))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            pre.append(line)
    return "\n".join(pre).strip("\n"), [(h, "\n".join(b).strip("\n")) for h, b in blocks]


def update_text(text: str, section: str, heading: str, body: str) -> str:
    """Put ``### heading`` + body under ``## section`` (replacing a subsection with the same heading)."""
    pre, sections = _split(text or HEADER, "## ")
    h2 = f"## {section}"
    sub = f"### {heading}\n\n{body.strip()}"
    out, placed = [], False
    for h, block in sections:
        if h.strip() == h2:
            spre, subs = _split(block.split("\n", 1)[1] if "\n" in block else "", "### ")
            subs = [(sh, sb) for sh, sb in subs if sh.strip() != f"### {heading}".strip()] + [(f"### {heading}", sub)]
            block = "\n\n".join(x for x in [h2, spre, *[sb for _, sb in subs]] if x)
            placed = True
        out.append(block)
    if not placed:
        out.append(f"{h2}\n\n{sub}")
    return "\n\n".join([pre or HEADER.strip(), *out]) + "\n"


def update_results(res: dict[str, Any], path: str | Path = RESULTS) -> str:
    """Render ``res`` and write it into ``path`` (atomically); returns the Markdown written."""
    section, heading, body = render(res)
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    atomic_write_text(path, update_text(old, section, heading, body))
    return f"### {heading}\n\n{body}"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Render benchmark result JSON files into RESULTS.md.")
    p.add_argument("results", nargs="+", type=Path, help="JSON files written by the benchmarks / gpu_suite.sh")
    p.add_argument("--results-md", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    for f in args.results:
        data = json.loads(f.read_text())
        for res in data if isinstance(data, list) else [data]:
            print(update_results(res, args.results_md), end="\n\n")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError, KeyError) as err:
        sys.exit(f"error: {err}")
