"""Benchmark results: machine/version info, Markdown tables, and updating ``benchmarks/RESULTS.md``.

The benchmark scripts write a results JSON and call :func:`render` + :func:`update_results`
themselves. Results measured elsewhere (e.g. a GPU machine) are rendered from their JSON:

    python benchmarks/write_results.py "bench.inputs=[RESULT.json,RESULT2.json]" [bench.results_md=FILE] \
        [bench.smi=smi.csv] [bench.combined=all.json]          # benchmarks/write_results.yaml

Every benchmark script takes ``[--config FILE] [key=value ...]`` (:func:`bench_config`; without
``--config`` the YAML beside the script), through the same runner as ``train.py``.

RESULTS.md layout: ``## <script>`` sections, each holding ``### <setting>`` subsections; a
subsection with the same heading line is replaced, others are kept.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from dcsm.io import atomic_write_json, atomic_write_text
from dcsm.commands.runner import command_config, run_command

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
DEFAULT_CONFIG = REPO / "benchmarks" / "write_results.yaml"
HEADER = "# Benchmarks\n\nFigures written by the scripts in this folder; each section names its machine and versions.\n"


# ----------------------------------------------------------------------------- config


def bench_config(argv: Sequence[str] | None, default: Path) -> dict:
    """A benchmark's ``[--config FILE] [key=value ...]`` (``sys.argv`` when None) -> resolved
    plain config over ``default`` (the YAML beside the script), which holds every key there is."""
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = command_config(args, default=default)  # a --config FILE is merged onto it: its keys are the known ones
    if not isinstance(cfg.get("bench"), dict):
        raise ValueError(f"the config has no bench: section. Fix: use {default.name} or a YAML with "
                         f"'base: {default.name}' (or a run config) plus its bench: section.")
    return cfg


def repo_path(path: str | Path) -> Path:
    """A path from a benchmark config: absolute as given, relative to the repository root otherwise."""
    path = Path(path)
    return path if path.is_absolute() else REPO / path


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
                     r["head_pairs_s"], f"{r['clip_ms']:,.1f} / {r['dcsm_ms']:,.1f} / {r['head_ms']:,.2f}"])
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
    if not res["rows"]:  # a cache-size-only run
        lines = render_cache_bytes(res.get("cache_bytes", [])) + ["", *res.get("notes", []), "", f"Versions: {versions_line(m)}."]
        return "train_throughput.py", f"{machine_line(m)} — feature cache bytes per sample", "\n".join(lines)
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
        f"{c['num_options']} options per sample; {c['num_workers']} loader workers; untimed warm-up {c['warmup']} batches "
        f"(resident) / {res.get('info', {}).get('loader_warmup_batches', c['warmup'])} (loader paths: drains the workers' "
        "prefetch queue), so compilation and start-up are excluded. live: raw image shards decoded by the workers, CLIP run every step; "
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
        ["model", "P x D", "real token rows", "bytes/sample: shard (fp16, + opposite image)",
         "fp16, no opposite", "int8 patches, no opposite", "1M samples: fp16 + opp / fp16 / int8",
         "int8 score change (max abs; score std)"],
        [[r["model"], f"{r['num_patches']} x {r['embed_dim']}", f"{r['real_tokens_per_sample']:.1f}",
          r["shard_bytes_per_sample"], r["fp16_bytes_per_sample_no_opposite"], r["int8_bytes_per_sample_no_opposite"],
          f"{r['fp16_gb_per_million']:.0f} / {r['fp16_gb_per_million_no_opposite']:.0f} / "
          f"{r['fp16_gb_per_million_no_opposite'] - (r['fp16_bytes_per_sample_no_opposite'] - r['int8_bytes_per_sample_no_opposite']) / 1e3:.0f} GB",
          f"{r['int8_score_max_abs_diff_patches_tokens']:.1e} ({r['score_std']:.1e})"] for r in rows],
    )
    return ["Feature cache size per sample (1 image + its options; only real token rows are stored). "
            "The shard figure is a real `feature_members` shard (tar + torch.save overhead included); the others "
            "are from the shapes; the 1M-sample disk adds the shard's measured overhead to each. int8: `dcsm.features.quantize` codes + one fp16 scale per vector; score change = "
            "int8 patches and tokens vs the fp16 features, same random-init head (default config):", "", *out]


def render_run(res: dict[str, Any]) -> tuple[str, str, str]:
    """20k-scene training run JSON -> (section, heading, body)."""
    m = res["machine"]
    data = res.get("config", {}).get("data", {})
    cache = f", data.cache={data['cache']}" if data.get("cache", "embeddings") != "embeddings" else ""
    heading = (f"{machine_line(m)} — {res['model']} (random init), {res['train_size']:,} scenes, {res['max_epochs']} "
               f"epochs{cache}")
    rows = [[k, v] for k, v in res["figures"].items()]
    lines = table(["", "value"], rows, align="lr")
    if res.get("notes"):
        lines += ["", *res["notes"]]
    lines += ["", f"Versions: {versions_line(m)}."]
    return "train.py (configs/default.yaml)", heading, "\n".join(lines)


# ----------------------------------------------------------------------------- GPU samples


def read_smi(path: str | Path) -> list[tuple[float, float, float]]:
    """``nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits``
    lines -> [(unix time, util %, MiB used)] (timestamps are local time on the same machine)."""
    from datetime import datetime

    out = []
    for line in Path(path).read_text().splitlines():
        parts = [x.strip() for x in line.split(",")]
        try:
            t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            out.append((t, float(parts[1]), float(parts[2])))
        except (ValueError, IndexError):  # header or a partial last line
            continue
    return out


def window_stats(samples: Sequence[tuple[float, float, float]], a: float, b: float) -> dict[str, float] | None:
    """Mean utilisation and max memory of the samples taken in ``[a, b]`` (None: no sample there)."""
    inside = [s for s in samples if a <= s[0] <= b]
    if not inside:
        return None
    return {"util_mean": sum(s[1] for s in inside) / len(inside), "util_min": min(s[1] for s in inside),
            "mem_max_mib": max(s[2] for s in inside), "n": len(inside)}


def attach_gpu_samples(res: dict[str, Any], samples: Sequence[tuple[float, float, float]]) -> dict[str, Any]:
    """Add GPU utilisation / memory from nvidia-smi samples to the rows (throughput) or figures (run)."""
    if res.get("kind") == "train_throughput":
        for r in res["rows"]:
            st = window_stats(samples, r["t_start"], r["t_end"]) if "t_start" in r else None
            if st:
                r.update(gpu_util_mean=st["util_mean"], gpu_mem_max_mib=st["mem_max_mib"], gpu_samples=st["n"])
    elif res.get("kind") == "train_run":
        w, fig = res["windows"], res["figures"]
        run = window_stats(samples, *w["run"])
        cache = window_stats(samples, *w["caching"])
        epochs = [st for a, b in w["epochs"] if (st := window_stats(samples, a, b))]
        if run:
            fig["peak GPU memory used (nvidia-smi, whole run)"] = f"{run['mem_max_mib'] / 1024:.2f} GiB"
        if cache:
            fig["GPU utilisation while encoding the cache (mean)"] = f"{cache['util_mean']:.0f}%"
        if epochs:
            n = sum(st["n"] for st in epochs)
            fig["GPU utilisation in train epochs (mean)"] = f"{sum(st['util_mean'] * st['n'] for st in epochs) / n:.0f}%"
    elif res.get("kind") == "score_throughput" and res.get("started"):
        st = window_stats(samples, res["started"], res["finished"])
        if st:
            res.setdefault("notes", []).append(f"GPU memory used (nvidia-smi, max over the script): {st['mem_max_mib'] / 1024:.1f} GiB.")
    return res


RENDERERS: dict[str, Callable[[dict[str, Any]], tuple[str, str, str]]] = {
    "score_throughput": render_score, "train_throughput": render_train, "train_run": render_run,
}


def render(res: dict[str, Any]) -> tuple[str, str, str]:
    kind = res.get("kind")
    if kind == "cache_speed":  # benchmarks/cache_speed.py renders its own section
        from cache_speed import render as render_cache_speed

        return render_cache_speed(res)
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


def save_result(res: dict[str, Any], bench: dict[str, Any]) -> None:
    """A benchmark's result: JSON to ``bench.output`` and its section into ``bench.results_md`` (each if set)."""
    if bench["output"]:
        atomic_write_json(bench["output"], res)
    if bench["results_md"]:
        print(update_results(res, repo_path(bench["results_md"])))


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Render the ``bench.inputs`` result JSONs into ``bench.results_md`` (GPU samples from
    ``bench.smi`` attached); ``bench.combined`` also gets them all as one JSON list."""
    b = bench_config(argv, DEFAULT_CONFIG)["bench"]
    if not b["inputs"]:
        raise ValueError("no result files. Fix: bench.inputs=[RESULT.json,...] (written by the benchmarks / gpu_suite.sh).")
    smi = Path(b["smi"]) if b["smi"] else None
    samples = read_smi(smi) if smi is not None and smi.is_file() else []
    combined = []
    for f in b["inputs"]:
        data = json.loads(Path(f).read_text())
        for res in data if isinstance(data, list) else [data]:
            res = attach_gpu_samples(res, samples) if samples else res
            combined.append(res)
            print(update_results(res, repo_path(b["results_md"])), end="\n\n")
    if b["combined"]:
        atomic_write_text(b["combined"], json.dumps(combined, indent=1, default=str) + "\n")
    return combined


if __name__ == "__main__":
    run_command(main)
