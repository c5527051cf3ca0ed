"""benchmarks/write_results.py: RESULTS.md sections are replaced or added, GPU samples land in the right rows."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def wr():
    spec = importlib.util.spec_from_file_location("write_results", REPO / "benchmarks" / "write_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MACHINE = {"device": "cuda", "cpu": "x86_64", "cpu_cores": 16, "torch_threads": 16, "python": "3.12.3",
           "torch": "2.11.0", "open_clip": "3.3.0", "lightning": "2.6.6", "gpu": "NVIDIA H100 80GB HBM3",
           "gpu_memory_gib": 79.2, "cuda": "13.0"}


def score_result(ratio: float = 0.95) -> dict:
    row = {"model": "ViT-B-16", "precision": "bf16", "clip_pairs_s": 1000.0, "dcsm_pairs_s": 1000.0 * ratio,
           "ratio": ratio, "head_pairs_s": 50000.0, "clip_ms": 256.0, "dcsm_ms": 269.5, "head_ms": 5.12}
    return {"kind": "score_throughput", "machine": MACHINE, "rows": [row, {"model": "ViT-L-14", "precision": "fp32", "error": "OOM"}],
            "config": {"batch_size": 64, "num_options": 4, "repeats": 5, "warmup": 2, "pretrained": None}}


def test_sections_are_replaced_by_heading_and_others_kept(wr, tmp_path) -> None:
    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmarks\n\nintro\n\n## train_throughput.py\n\n### old CPU figures\n\n| a |\n")
    wr.update_results(score_result(0.5), md)
    wr.update_results(score_result(0.95), md)  # same machine + setting: replaces the 0.5 table
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nintro")
    assert "### old CPU figures" in text  # another script's section is untouched
    assert text.count("## score_throughput.py") == 1 and text.count("### NVIDIA H100") == 1
    assert "| ViT-B-16 | bf16 | 1,000.0 | 950.0 | 0.95x | 50,000.0 |" in text
    assert "0.50x" not in text and "error: OOM" in text
    assert "torch 2.11.0" in text


def test_gpu_samples_are_attached_to_their_time_windows(wr, tmp_path) -> None:
    t = datetime(2026, 1, 1, 12, 0, 0).timestamp()
    smi = tmp_path / "smi.csv"
    lines = [f"{datetime.fromtimestamp(t + i).strftime('%Y/%m/%d %H:%M:%S.%f')[:-3]}, {u}, {100 + i}"
             for i, u in enumerate([0, 90, 80, 10, 10])]
    smi.write_text("\n".join(lines) + "\n2026/01/01 12:00")  # a partial last line is ignored
    res = {"kind": "train_throughput", "machine": MACHINE, "rows": [
        {"path": "cached", "batch_size": 256, "compile": False, "t_start": t + 0.5, "t_end": t + 2.5, "samples": 1,
         "seconds": 1.0, "samples_s": 1.0, "pairs_s": 4.0},
        {"path": "live", "batch_size": 64, "compile": False, "error": "boom"}],
        "config": {"model": "ViT-B-16", "pretrained": None, "precision": "bf16-mixed", "num_options": 4,
                   "num_workers": 12, "warmup": 3}}
    res = wr.attach_gpu_samples(res, wr.read_smi(smi))
    assert res["rows"][0]["gpu_util_mean"] == pytest.approx(85.0) and res["rows"][0]["gpu_mem_max_mib"] == 102
    out = tmp_path / "all.json"
    wr.main([f"bench.inputs=[{_dump(tmp_path, res)}]", f"bench.smi={smi}", f"bench.combined={out}",
             f"bench.results_md={tmp_path / 'R.md'}"])
    assert json.loads(out.read_text())[0]["rows"][0]["gpu_samples"] == 2
    assert "| cached | 256 | no | 1 | 1.0 | 1.0 | 4.0 | 85% |" in (tmp_path / "R.md").read_text()


def _dump(tmp_path, res: dict):
    p = tmp_path / "res.json"
    p.write_text(json.dumps(res))
    return p


def test_unknown_kind_is_refused(wr) -> None:
    with pytest.raises(ValueError, match="kind"):
        wr.render({"kind": "nope"})


def test_command_line_needs_inputs_and_a_bench_section(wr, tmp_path) -> None:
    with pytest.raises(ValueError, match="bench.inputs"):
        wr.main([])  # benchmarks/write_results.yaml: no inputs by default
    with pytest.raises(ValueError, match="unknown config key"):
        wr.main(["bench.result=[x.json]"])
    with pytest.raises(ValueError, match="unknown config key 'seed' .*write_results.yaml"):  # not its keys
        wr.main(["--config", str(REPO / "configs" / "default.yaml")])
    with pytest.raises(FileNotFoundError):
        wr.main([f"bench.inputs=[{tmp_path / 'missing.json'}]", f"bench.results_md={tmp_path / 'R.md'}"])
