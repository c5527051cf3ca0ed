"""evaluate.py eval.benchmark=all on a miniature data root; eval.diagnostics from evaluate.py."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from dcsm.commands.evaluate import main as evaluate
from dcsm.data.benchmarks.dataset import BenchmarkDataset, styled_captions
from dcsm.data.benchmarks.items import open_item_image
from dcsm.data.benchmarks.registry import SUITE_SUBSETS
from dcsm.eval.suite import load_suite
from tests.conftest import TINY_OVERRIDES, TINY_SPEC
from tests.suite_helpers import ABSENT, draw_suite_tree, write_checkpoint

SCORED = [s for s in SUITE_SUBSETS if s not in ABSENT]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return draw_suite_tree(tmp_path_factory.mktemp("suite") / "data")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, encoder) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("run") / "runA" / "checkpoints" / "best.ckpt", encoder)


@pytest.fixture(scope="module")
def suite_report(tree: Path, ckpt: Path) -> tuple[dict, str]:
    import contextlib

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        report = evaluate(["eval.benchmark=all", f"eval.data_root={tree}", f"eval.checkpoint={ckpt}",
                           "eval.num_workers=0", "eval.batch_size=3", "logger.kind=none"])
    return report, buf.getvalue()


def test_all_prints_the_table_and_lists_the_two_absent_as_skipped(suite_report, tree: Path, ckpt: Path) -> None:
    report, printed = suite_report
    out = ckpt.parent.parent / "eval_all_raw.json"
    assert report["output"] == str(out) and out.is_file()
    lines = printed.splitlines()
    assert "| subset | n | dcsm | clip |" in lines
    rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| subset")]
    assert len(rows) == len(SUITE_SUBSETS)  # one row per subset, absent ones included
    assert "| CLEVR-bind gen | - | skipped | skipped |" in lines and "| NegBench VOC | - | skipped | skipped |" in lines
    assert f"- CLEVR-bind gen (`clevr_bind_gen`): expected `{tree / 'clevr_bind' / 'two_object' / 'gen.csv'}`" in lines
    assert f"- NegBench VOC (`negbench_voc`): expected `{tree / 'negbench' / 'VOC2007_mcq_llama3.1_rephrased.csv'}`" in lines
    # counts: images on disk per subset (NCD: two phrasings of one image; VG-Attribution: 2 of 3 rows)
    assert report["counts"] == {**{s: 1 for s in SCORED}, "controlled_a": 2, "ncd": 2, "vg_attribution": 2,
                                "clevr_bind_train": 1, "clevr_bind_val": 1}
    assert report["missing_images"]["vg_attribution"]["count"] == 1
    assert [s["dataset"] for s in report["skipped"]] == list(ABSENT)


def test_all_outputs_json_markdown_csv_agree(suite_report, ckpt: Path) -> None:
    report, _ = suite_report
    js = json.loads(Path(report["output"]).read_text())
    recs = js["results"]
    assert {"dataset", "model", "pretrained", "task", "language", "metrics"} <= set(recs[0])
    assert {(r["column"], r["dataset"]) for r in recs} == {(c, s) for c in ("dcsm", "clip") for s in SCORED}
    dcsm_rec = next(r for r in recs if r["column"] == "dcsm" and r["dataset"] == "controlled_a")
    assert dcsm_rec["checkpoint"] == str(ckpt) and dcsm_rec["model"] == TINY_SPEC.model and dcsm_rec["metrics"]["n"] == 2
    assert dcsm_rec["metrics"]["acc"] == js["metrics"]["dcsm"]["controlled_a"]["accuracy"]
    md = Path(report["markdown"]).read_text()
    assert md == report["table"]
    rows = list(csv.DictReader(io.StringIO(Path(report["csv"]).read_text())))
    assert [r["subset"] for r in rows] == list(SUITE_SUBSETS)
    for r in rows:
        if r["subset"] in ABSENT:
            assert r["status"] == "skipped" and r["expected_path"]
        else:
            assert r["status"] == "ok" and float(r["dcsm"]) == pytest.approx(js["accuracy"]["dcsm"][r["subset"]], abs=1e-4)


@torch.no_grad()
def test_suite_accuracy_matches_a_per_item_loop(suite_report, tree: Path, encoder) -> None:
    """Every DCSM/CLIP cell = argmax accuracy of one-item-at-a-time scores (crop box applied)."""
    from dcsm.checkpoints.load import load_dcsm

    report, _ = suite_report
    model = load_dcsm(report["columns"]["dcsm"]["checkpoint"], encoder=encoder)[0]
    loaded, _ = load_suite(tree)
    for sub in loaded:
        ds = BenchmarkDataset(sub.items, encoder.preprocess, "raw", sub.loader)
        ok_d, ok_c = [], []
        for it in ds.items:
            f = model.encode(encoder.preprocess(open_item_image(it)).unsqueeze(0), [styled_captions(it, "raw", sub.loader)])
            ok_d.append(int(model(f)[0].argmax()) == it.label)
            ok_c.append(int(model.clip_scores(f)[0].argmax()) == it.label)
        assert report["accuracy"]["dcsm"][sub.subset] == pytest.approx(sum(ok_d) / len(ok_d)), sub.subset
        assert report["accuracy"]["clip"][sub.subset] == pytest.approx(sum(ok_c) / len(ok_c)), sub.subset


def test_single_new_benchmark_and_errors(tree: Path, ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "vga.json"
    rep = evaluate(["eval.benchmark=vg_attribution", f"eval.annotation_files=[{tree / 'visual_genome_attribution.json'}]",
                    f"eval.image_root={tree / 'VG_100K'}", f"eval.checkpoint={ckpt}", f"eval.output={out}",
                    "eval.num_workers=0", "logger.kind=none"])
    assert rep["n_scored"] == 2 and rep["missing_images"]["count"] == 1 and out.is_file()
    ncd = evaluate(["eval.benchmark=ncd", f"eval.annotation_files=[{tree / 'NCD_colorful_composite_squares'}]",
                    f"eval.image_root={tree}", f"eval.checkpoint={ckpt}", f"eval.output={tmp_path / 'ncd.json'}",
                    "eval.num_workers=0", "logger.kind=none"])
    assert ncd["n_scored"] == 2 and set(ncd["metrics"]["dcsm"]["per_group"]["ncd"]) == {"order_ab", "order_ba"}
    with pytest.raises(ValueError, match="eval.data_root"):
        evaluate(["eval.benchmark=all", f"eval.checkpoint={ckpt}"])
    with pytest.raises(ValueError, match="nothing to score"):
        evaluate(["eval.benchmark=all", f"eval.data_root={tree}"])
    with pytest.raises(ValueError, match="eval.benchmark='whatsupp' is not allowed"):
        evaluate(["eval.benchmark=whatsupp", f"eval.checkpoint={ckpt}"])
    with pytest.raises(ValueError, match="benchmark=all only"):
        evaluate(["eval.benchmark=whatsup", f"eval.checkpoint=[{ckpt},{ckpt}]"])


def test_two_checkpoints_get_a_column_each(tree: Path, ckpt: Path, encoder, tmp_path: Path) -> None:
    other = write_checkpoint(tmp_path / "runB" / "checkpoints" / "last.ckpt", encoder, seed=1)
    small = tmp_path / "small"  # NCD only: the other subsets are skipped
    shutil.copytree(tree / "NCD_colorful_composite_squares", small / "NCD_colorful_composite_squares")
    rep = evaluate(["eval.benchmark=all", f"eval.data_root={small}", f"eval.checkpoint=[{ckpt},{other}]",
                    f"eval.output={tmp_path / 'two.json'}", "eval.num_workers=0", "logger.kind=none"])
    # one CLIP column per distinct encoder, a DCSM column per run
    assert list(rep["columns"]) == ["dcsm:runA", f"clip:{TINY_SPEC.model}:{TINY_SPEC.pretrained}", "dcsm:runB"]
    assert set(rep["accuracy"]["dcsm:runB"]) == {"ncd"} and len(rep["skipped"]) == len(SUITE_SUBSETS) - 1
    assert (tmp_path / "two.csv").read_text().splitlines()[0] == f"subset,label,n,dcsm:runA,clip:{TINY_SPEC.model}:{TINY_SPEC.pretrained},dcsm:runB,status,expected_path"


@pytest.mark.slow
def test_eval_diagnostics_on_a_bare_encoder_and_a_checkpoint(tmp_path: Path, ckpt: Path, tree: Path) -> None:
    tiny = ["eval.diagnostics=[heads]", "diagnostics.image_set.size=4", "diagnostics.textspan.m=2",
            "diagnostics.heads.top_k=2", "diagnostics.batch_size=4", *TINY_OVERRIDES, f"run_dir={tmp_path / 'bare'}"]
    rep = evaluate(tiny)
    files = rep["diagnostics"]["files"]
    assert Path(files["json"]) == tmp_path / "bare" / "diagnostics" / "diagnostics.json"
    assert Path(files["json"]).is_file() and Path(files["head_scores_png"]).stat().st_size > 0
    assert json.loads(Path(files["json"]).read_text())["heads"]["ranking"]
    with pytest.raises(ValueError, match=r"eval.diagnostics=\['centre'\] is not allowed"):
        evaluate(["eval.diagnostics=[centre]", *tiny[1:]])
    # with a checkpoint and eval.output: the diagnostics land beside the output, then the benchmark runs as usual
    rep = evaluate([*tiny, f"eval.checkpoint={ckpt}", "eval.benchmark=ncd", "eval.num_workers=0", "logger.kind=none",
                    f"eval.annotation_files=[{tree / 'NCD_colorful_composite_squares'}]", f"eval.image_root={tree}",
                    f"eval.output={tmp_path / 'ncd.json'}"])
    assert rep["n_scored"] == 2 and Path(rep["diagnostics"]["json"]) == tmp_path / "diagnostics" / "diagnostics.json"
    assert Path(rep["diagnostics"]["json"]).is_file()


def test_suite_counts_and_lists_unreadable_images(tree: Path, ckpt: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"  # NCD only, plus one file named like an image that holds text
    shutil.copytree(tree / "NCD_colorful_composite_squares", small / "NCD_colorful_composite_squares")
    bad = small / "NCD_colorful_composite_squares" / "red_cube_blue_ball.png"
    bad.write_text("not an image\n")
    rep = evaluate(["eval.benchmark=all", f"eval.data_root={small}", f"eval.checkpoint={ckpt}",
                    f"eval.output={tmp_path / 'u.json'}", "eval.num_workers=0", "logger.kind=none", "progress=false"])
    unreadable = rep["unreadable_images"]["ncd"]
    assert unreadable["count"] == 2  # both phrasings of the one file
    assert {u["path"] for u in unreadable["items"]} == {str(bad)}
    assert all(u["reason"].startswith("UnidentifiedImageError") for u in unreadable["items"])
    assert rep["counts"]["ncd"] == 2 and rep["metrics"]["dcsm"]["ncd"]["n"] == 2  # the readable image's two items
    assert f"Unreadable images (2; their rows are not scored): `{bad}` (ncd)" in Path(rep["markdown"]).read_text()
