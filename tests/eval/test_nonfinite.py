"""A NaN is never a right answer: non-finite scores count as wrong, are counted (``n_nonfinite``)
beside ``n_tied`` and warned about in the log and the Markdown, on every scoring path (synthetic
splits, benchmark files, WhatsUp pair/set accuracy, the suite, the CLIP columns); a NaN
training loss stops the run naming the step."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
import torch

from dcsm.eval.benchmark import run_benchmark
from dcsm.eval.suite import run_suite
from dcsm.data.benchmarks.items import MCQItem
from dcsm.data.synthetic.dataset import SyntheticDataConfig
from dcsm.eval.loop import evaluate_synthetic
from dcsm.eval.metrics import NONFINITE, NONFINITE_RULE, TIE, category_accuracy, mcq_metrics, top_choice
from dcsm.model.dcsm import DCSM
from dcsm.eval.report import format_synthetic_table
from dcsm.commands.runner import command_config
from tests.suite_helpers import draw_suite_tree
from tests.eval.test_benchmark_eval import NEGBENCH_VOC_FIXTURE, WHATSUP_A_FIXTURE, _draw
from tests.eval.test_ties import module  # noqa: F401  (the random-init DCSM fixture)
from tests.conftest import TINY_OVERRIDES

NO_LOGGER = {"kind": "none"}
N_DRAWN = 8
WARNING = "NaN or infinite scores"


def _nan_head(model: DCSM) -> DCSM:
    """A copy of ``model`` whose head has one NaN weight."""
    broken = copy.deepcopy(model)
    weight = next(p for p in broken.head.parameters() if p.dim() > 1)
    with torch.no_grad():
        weight.view(-1)[0] = float("nan")
    return broken


@pytest.fixture(scope="module")
def nan_module(module: DCSM) -> DCSM:  # noqa: F811
    return _nan_head(module)


def _drawn_rows(bench: str, root: Path) -> int:
    """Draw the images of the fixture's first ``N_DRAWN`` rows under ``root`` (found by file name)."""
    if bench == "whatsup":
        raw = [r["image_path"] for r in json.loads(WHATSUP_A_FIXTURE.read_text())]
    else:
        with open(NEGBENCH_VOC_FIXTURE, encoding="utf-8-sig", newline="") as fh:
            raw = [r["image_path"] for r in csv.DictReader(fh)]
    names = {Path(p).name for p in raw[:N_DRAWN]}
    for name in names:
        _draw(root / name)
    return sum(Path(p).name in names for p in raw)


def _run(model: DCSM, bench: str, fixture: Path, root: Path, out: Path, baselines=()) -> dict:
    return run_benchmark(
        model, bench, [fixture], root, prompt_style="raw", baselines=list(baselines), batch_size=4, num_workers=0,
        max_failures=1, output=out, logger_cfg=NO_LOGGER, progress=False,
    )


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------


def test_top_choice_marks_any_nonfinite_row() -> None:
    nan, inf = float("nan"), float("inf")
    scores = torch.tensor([
        [nan, nan, nan, nan],  # argmax would say 0, the answer in most files
        [0.1, nan, 0.3, 0.2],  # one NaN option
        [inf, 0.1, 0.2, 0.3],  # +inf is not an answer either
        [0.5, 0.5, -inf, 0.1],  # a tie with a -inf option: non-finite first
        [0.1, 0.9, 0.3, 0.2],
        [0.5, 0.5, 0.1, 0.0],
    ])
    assert top_choice(scores).tolist() == [NONFINITE, NONFINITE, NONFINITE, NONFINITE, 1, TIE]
    assert NONFINITE != TIE and NONFINITE < 0 and "n_nonfinite" in NONFINITE_RULE


def test_mcq_metrics_counts_partial_nonfinite_exactly_per_subset_group_and_pair_set() -> None:
    preps = ("left_of", "right_of", "on", "under")
    items = [
        MCQItem(raw_image_path=f"{p}{g}.jpg", image_path=None, captions=("a", "b", "c", "d"), label=0,
                subset="controlled_a", group=g, source="f.json", row=k, pair_key=p, )
        for k, (p, g) in enumerate([(p, g) for p in ("mug", "cup") for g in preps])
    ] + [MCQItem(raw_image_path="x.jpg", image_path=None, captions=("a", "b"), label=1, subset="voc", group="negative",
                 source="v.csv", row=9, pair_key=None)]
    preds = [0, 0, 0, NONFINITE,  0, 0, 0, 0,  NONFINITE]  # one NaN breaks the mug set and its on/under pair
    m = mcq_metrics(items, preds)
    assert m["n_nonfinite"] == 2 and m["n_tied"] == 0
    assert m["n_nonfinite_per_subset"] == {"controlled_a": 1, "voc": 1}
    assert m["n_nonfinite_per_group"] == {"controlled_a": {"left_of": 0, "on": 0, "right_of": 0, "under": 1},
                                          "voc": {"negative": 1}}
    assert m["accuracy"] == 7 / 9 and m["per_subset"]["voc"]["accuracy"] == 0.0
    assert m["pair_accuracy"]["controlled_a"] == 3 / 4 and m["set_accuracy"]["controlled_a"] == 1 / 2


def test_category_accuracy_counts_nonfinite_and_the_table_warns() -> None:
    nan = float("nan")
    scores = {
        "dcsm": torch.tensor([[nan, 0.1, 0.0], [0.2, 0.8, 0.1], [0.7, nan, 0.1], [0.1, 0.2, 0.9]]),
        "clip": torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.3, 0.1], [0.6, 0.2, 0.2], [0.1, 0.2, 0.9]]),
        "label": torch.tensor([0, 1, 0, 2]),
        "category": torch.tensor([0, 0, 1, 1]),
    }
    res = category_accuracy(scores, ["binding", "spatial"])
    assert res["dcsm"] == {"all": 0.5, "binding": 0.5, "spatial": 0.5}  # the NaN rows had the top score elsewhere
    assert res["n_nonfinite"] == {"dcsm": {"all": 2, "binding": 1, "spatial": 1}, "clip": {"all": 0, "binding": 0, "spatial": 0}}
    table = format_synthetic_table({"test": res}, ["binding", "spatial"])
    assert WARNING in table and "test DCSM: 2" in table and "test CLIP" not in table
    clean = {k: v for k, v in scores.items()}
    clean["dcsm"] = torch.nan_to_num(scores["dcsm"])
    assert WARNING not in format_synthetic_table({"test": category_accuracy(clean, ["binding", "spatial"])}, ["binding"])


# ---------------------------------------------------------------------------------------------
# benchmark files: WhatsUp Controlled-A and NegBench VOC rows with drawn images
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bench,fixture", [("whatsup", WHATSUP_A_FIXTURE), ("negbench", NEGBENCH_VOC_FIXTURE)],
                         ids=["whatsup_a", "negbench_voc"])
def test_nan_head_scores_zero_not_hundred(bench, fixture, module, nan_module, tmp_path, caplog) -> None:  # noqa: F811
    if not fixture.is_file():
        pytest.skip(f"fixture {fixture} absent (CI clones the repo with shared/ beside it)")
    n = _drawn_rows(bench, tmp_path / "img")
    with caplog.at_level("WARNING", logger="dcsm"):
        report = _run(nan_module, bench, fixture, tmp_path / "img", tmp_path / "out.json")
    dcsm, clip = report["metrics"]["dcsm"], report["metrics"]["clip"]
    assert report["n_scored"] == n >= N_DRAWN
    assert dcsm["accuracy"] == 0.0 and dcsm["n_nonfinite"] == n and dcsm["n_tied"] == 0
    assert sum(dcsm["n_nonfinite_per_subset"].values()) == n
    assert clip["n_nonfinite"] == 0  # the same encoder's CLIP column is healthy
    if bench == "whatsup":
        assert dcsm["pair_accuracy"]["controlled_a"] == 0.0 and dcsm["set_accuracy"]["controlled_a"] == 0.0
    assert report["failures"][0]["nonfinite"] and report["failures"][0]["prediction"] == NONFINITE
    md = Path(report["markdown"]).read_text()
    assert WARNING in md and f"dcsm: {n}" in md and "| n non-finite |" in md
    assert json.loads(Path(report["output"]).read_text())["nonfinite_rule"] == NONFINITE_RULE
    assert any(WARNING in r.getMessage() and f"dcsm {n}" in r.getMessage() for r in caplog.records)
    healthy = _run(module, bench, fixture, tmp_path / "img", tmp_path / "ok.json")
    assert healthy["metrics"]["dcsm"]["n_nonfinite"] == 0
    assert WARNING not in Path(healthy["markdown"]).read_text()


def test_partial_nan_items_and_clip_column_counted_exactly(module, tmp_path, monkeypatch) -> None:  # noqa: F811
    if not WHATSUP_A_FIXTURE.is_file():
        pytest.skip("fixture absent")
    n = _drawn_rows("whatsup", tmp_path / "img")
    broken_dcsm, broken_clip = {0, 3, 5}, {1}  # item indices (file rows) whose scores turn NaN
    forward, baseline_scores = DCSM.forward, DCSM.baseline_scores

    def _poison(scores: torch.Tensor, f, rows: set[int]) -> torch.Tensor:
        hit = torch.tensor([int(i) in rows for i in f.extras["item_index"].tolist()])
        scores = scores.clone()
        scores[hit, 1] = float("nan")  # one option of the item
        return scores

    monkeypatch.setattr(DCSM, "forward", lambda self, f, options=None: _poison(forward(self, f), f, broken_dcsm))
    monkeypatch.setattr(DCSM, "baseline_scores", lambda self, f: _poison(baseline_scores(self, f), f, broken_clip))  # the clip column
    report = _run(module, "whatsup", WHATSUP_A_FIXTURE, tmp_path / "img", tmp_path / "out.json")
    assert report["n_scored"] == n
    assert report["metrics"]["dcsm"]["n_nonfinite"] == len(broken_dcsm)
    assert report["metrics"]["clip"]["n_nonfinite"] == len(broken_clip)
    md = Path(report["markdown"]).read_text()
    assert f"dcsm: {len(broken_dcsm)}; clip: {len(broken_clip)}" in md


# ---------------------------------------------------------------------------------------------
# synthetic splits and the suite
# ---------------------------------------------------------------------------------------------


def test_nan_head_on_synthetic_splits(nan_module, caplog) -> None:  # noqa: F811
    cfg = command_config(["data.test_size=6", "data.image_size=64", "data.num_workers=0", "progress=false",
                          *TINY_OVERRIDES])
    with caplog.at_level("WARNING", logger="dcsm"):
        res = evaluate_synthetic(nan_module, SyntheticDataConfig.from_config(cfg), ["test"], batch_size=3, device="cpu")
    assert res["test"]["dcsm"]["all"] == 0.0 and res["test"]["n_nonfinite"]["dcsm"]["all"] == 6
    assert res["test"]["n_nonfinite"]["clip"]["all"] == 0
    assert any("synthetic split test" in r.getMessage() and WARNING in r.getMessage() for r in caplog.records)
    assert "test DCSM: 6" in format_synthetic_table(res, SyntheticDataConfig.from_config(cfg).categories)


def test_nan_head_in_the_suite(nan_module, tmp_path) -> None:  # noqa: F811
    tree = draw_suite_tree(tmp_path / "data")
    report = run_suite([(nan_module, None)], tree, prompt_style="raw", baselines=[], batch_size=4, num_workers=0,
                       output=tmp_path / "suite.json", progress=False)
    for subset, n in report["counts"].items():
        assert report["n_nonfinite"]["dcsm"][subset] == n, subset
        assert report["n_nonfinite"]["clip"][subset] == 0
        assert report["accuracy"]["dcsm"][subset] in (0.0, None), subset
    md = Path(report["markdown"]).read_text()
    assert WARNING in md and "dcsm controlled_a" in md
    assert json.loads(Path(report["output"]).read_text())["nonfinite_rule"] == NONFINITE_RULE


# ---------------------------------------------------------------------------------------------
# training: a non-finite loss stops the run, naming the step
# ---------------------------------------------------------------------------------------------


def test_nan_loss_stops_training_naming_the_step(tmp_path, monkeypatch, capsys) -> None:
    import dcsm.train.module as lit
    from dcsm.commands.train import main as train_main
    from dcsm.commands.runner import run_command

    real = lit.LOSS_FNS["mcq"]
    calls = {"n": 0}

    def nan_at_third(model, f):  # steps 0 and 1 are fine, step 2's loss is NaN
        loss, acc = real(model, f)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), acc

    monkeypatch.setitem(lit.LOSS_FNS, "mcq", nan_at_third)
    smoke = str(Path(__file__).resolve().parents[2] / "configs" / "smoke_random.yaml")
    with pytest.raises(SystemExit) as exc:
        run_command(train_main, ["--config", smoke, f"run_dir={tmp_path}", "logger.kind=none", "data.train_size=32",
                                 "data.val_size=4", "data.test_size=4", "data.shifted_size=4", "data.batch_size=8",
                                 "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "progress=false",
                                 "checkpoint.every_n_train_steps=1"])
    assert exc.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "training loss became nan at step 2 (epoch 0, batch 2)" in err[0]
    assert calls["n"] == 3  # nothing ran after the NaN step
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["global_step"] == 2  # the last good step; the NaN step was neither applied nor saved
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()
