"""Ties count as wrong: :func:`dcsm.eval.metrics.top_choice` and every evaluation built on it.

Options that are equal after truncation (past ``encoder.max_tokens`` or CLIP's text context)
score bit-identically; a plain argmax picks the first of them, which in a WhatsUp file is the
answer. These tests plant such files and check that ties are counted and counted as wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dcsm.eval.benchmark import run_benchmark
from dcsm.config import load_yaml, to_plain
from dcsm.data.benchmarks.items import MCQItem
from dcsm.model.encoders import EncoderSpec
from dcsm.eval.metrics import TIE, TIE_RULE, category_accuracy, mcq_metrics, top_choice
from dcsm.model.dcsm import DCSM, build_dcsm
from dcsm.eval.report import format_synthetic_table
from tests.eval.test_benchmark_eval import _draw  # a drawn image whose content depends on its file name
from tests.conftest import TINY_SPEC

REPO = Path(__file__).resolve().parents[2]
NO_LOGGER = {"kind": "none"}
PREPS = {"left_of": "to the left of", "right_of": "to the right of", "on": "on", "under": "under"}
PAIRS = [("mug", "table"), ("scarf", "armchair")]
N_ITEMS = len(PAIRS) * len(PREPS)
# 22 words: past max_tokens=20 of the test encoder, well inside CLIP's 77-token context
PREFIX_22 = "a small red ceramic mug with a chipped handle and a faded blue logo printed on its side sits quietly next to"
# ~100 words: past CLIP's 77-token context too, so even the pooled embeddings are identical
PREFIX_LONG = " ".join(["a small red ceramic mug with a chipped handle"] * 12)


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module(encoder) -> DCSM:
    cfg = to_plain(load_yaml(REPO / "configs" / "smoke_random.yaml"))
    cfg["encoder"].update(model=TINY_SPEC.model, pretrained=TINY_SPEC.pretrained)
    assert encoder.spec.to_dict() == EncoderSpec(**cfg["encoder"]).to_dict()
    torch.manual_seed(0)
    return build_dcsm(cfg, encoder).eval()


def _controlled_a(tmp_path: Path, options) -> tuple[Path, Path]:
    """A Controlled-A file (correct option first, as in the release) with drawn images;
    ``options(o1, o2, own_relation)`` gives each row's 4 captions."""
    root = tmp_path / "data"
    rows = []
    for o1, o2 in PAIRS:
        for rel, text in PREPS.items():
            raw = f"data/controlled_images/{o1}_{rel}_{o2}.jpeg"
            _draw(root / "controlled_images" / Path(raw).name)
            rows.append({"image_path": raw, "caption_options": options(o1, o2, text)})
    ann = tmp_path / "controlled_images_dataset.json"
    ann.write_text(json.dumps(rows))
    return ann, root


def _with_prefix(prefix: str):
    def options(o1: str, o2: str, own: str) -> list[str]:
        rels = [own] + [t for t in PREPS.values() if t != own]
        return [f"{prefix} {o1} {r} a {o2}" for r in rels]
    return options


def _run(module: DCSM, ann: Path, root: Path, tmp_path: Path) -> dict:
    return run_benchmark(
        module, "whatsup", [ann], root, prompt_style="raw", baselines=[], batch_size=3, num_workers=0,
        max_failures=2, output=tmp_path / "out" / "whatsup.json", logger_cfg=NO_LOGGER, progress=False,
    )


# ---------------------------------------------------------------------------------------------
# (a) top_choice
# ---------------------------------------------------------------------------------------------


def test_top_choice_unique_max_tie_and_shapes() -> None:
    scores = torch.tensor([
        [0.1, 0.9, 0.3, 0.2],  # unique max -> 1
        [0.5, 0.5, 0.1, 0.0],  # two share the top -> tie
        [0.2, 0.7, 0.7, 0.7],  # three share the top -> tie
        [0.4, 0.4, 0.9, 0.1],  # a tie below the top does not matter -> 2
        [0.3, 0.3, 0.3, 0.3],  # all equal -> tie
    ])
    assert top_choice(scores).tolist() == [1, TIE, TIE, 2, TIE]
    assert top_choice(scores).dtype == torch.long
    assert TIE == -1 and "wrong" in TIE_RULE and "n_tied" in TIE_RULE
    assert int(top_choice(torch.tensor([0.2, 0.2]))) == TIE  # one item's (K,) scores
    assert int(top_choice(torch.tensor([0.1, 0.3]))) == 1
    assert top_choice(torch.tensor([[5.0]])).tolist() == [0]  # one option: never a tie
    # the label is never TIE, so a tie with the correct option is wrong
    label = torch.tensor([1, 0, 1, 2, 0])
    assert (top_choice(scores) == label).tolist() == [True, False, False, True, False]
    with pytest.raises(ValueError, match="shape"):
        top_choice(torch.tensor(1.0))


def test_mcq_metrics_counts_ties_as_wrong_per_subset_and_group() -> None:
    items = [
        MCQItem(raw_image_path=f"i{k}.jpg", image_path=None, captions=("a", "b", "c", "d"), label=0, subset=sub, group=grp,
                source="f.json", row=k, pair_key=None)
        for k, (sub, grp) in enumerate([("s1", "g1"), ("s1", "g2"), ("s2", "g1"), ("s2", "g1")])
    ]
    m = mcq_metrics(items, [0, TIE, TIE, 0])
    assert m["accuracy"] == 0.5 and m["n_tied"] == 2
    assert m["n_tied_per_subset"] == {"s1": 1, "s2": 1}
    assert m["n_tied_per_group"] == {"s1": {"g1": 0, "g2": 1}, "s2": {"g1": 1}}
    assert m["per_subset"]["s1"] == {"accuracy": 0.5, "n": 2}
    with pytest.raises(ValueError, match="out of range"):
        mcq_metrics(items[:1], [-3])


# ---------------------------------------------------------------------------------------------
# (b) options sharing a prefix longer than the kept tokens
# ---------------------------------------------------------------------------------------------


def test_prefix_past_clip_context_ties_every_option_for_dcsm_and_clip(module, tmp_path) -> None:
    ann, root = _controlled_a(tmp_path, _with_prefix(PREFIX_LONG))
    report = _run(module, ann, root, tmp_path)
    for name in ("dcsm", "clip"):  # argmax would pick the first option, the answer: 100 %
        m = report["metrics"][name]
        assert m["accuracy"] == 0.0, name
        assert m["n_tied"] == N_ITEMS and m["n_tied_per_subset"] == {"controlled_a": N_ITEMS}
        assert m["n_tied_per_group"]["controlled_a"] == {g: len(PAIRS) for g in PREPS}
        assert m["pair_accuracy"]["controlled_a"] == 0.0 and m["set_accuracy"]["controlled_a"] == 0.0
    assert report["n_truncation_identical"] == {"controlled_a": N_ITEMS}
    assert report["tie_rule"] == TIE_RULE
    fail = report["failures"][0]  # a tie is a failure; the shown rival is another (identical-scoring) option
    assert fail["prediction"] == TIE and fail["tied"] and fail["predicted_caption"] != fail["correct_caption"]
    assert json.loads(Path(report["output"]).read_text())["tie_rule"] == TIE_RULE
    md = Path(report["markdown"]).read_text()
    assert TIE_RULE in md
    assert f"| controlled_a | n tied | {N_ITEMS} | {N_ITEMS} | {N_ITEMS} |" in md
    assert f"controlled_a {N_ITEMS}" in md  # the truncation note


def test_prefix_past_max_tokens_ties_dcsm_not_clip(module, tmp_path, caplog) -> None:
    """The issue's case: a 22-word shared prefix (past max_tokens=20, inside CLIP's context)."""
    n_words = len(PREFIX_22.split())
    assert n_words == 22 and int(module.encoder.lengths(module.encoder.tokenize([PREFIX_22]))[0]) > module.encoder.spec.max_tokens
    ann, root = _controlled_a(tmp_path, _with_prefix(PREFIX_22))
    with caplog.at_level("WARNING", logger="dcsm.eval.benchmark"):
        report = _run(module, ann, root, tmp_path)
    dcsm, clip = report["metrics"]["dcsm"], report["metrics"]["clip"]
    assert dcsm["accuracy"] == 0.0 and dcsm["n_tied"] == N_ITEMS  # argmax: 100 %
    assert clip["n_tied"] == 0  # the pooled embeddings still see the whole caption
    assert report["n_truncation_identical"] == {"controlled_a": N_ITEMS}
    warned = [r.getMessage() for r in caplog.records if "identical after truncation" in r.getMessage()]
    assert len(warned) == 1 and "row" in warned[0] and str(ann) in warned[0]


# ---------------------------------------------------------------------------------------------
# (c) identical options
# ---------------------------------------------------------------------------------------------


def test_identical_options_are_wrong_for_both_scorers(module, tmp_path) -> None:
    ann, root = _controlled_a(tmp_path, lambda o1, o2, own: [f"A {o1} {own} a {o2}"] * 4)
    report = _run(module, ann, root, tmp_path)
    for name in ("dcsm", "clip"):
        assert report["metrics"][name]["accuracy"] == 0.0 and report["metrics"][name]["n_tied"] == N_ITEMS
    assert report["n_truncation_identical"] == {"controlled_a": 0}  # same text: not a truncation artefact


def test_distinct_short_options_do_not_tie(module, tmp_path) -> None:
    ann, root = _controlled_a(tmp_path, _with_prefix("A"))
    report = _run(module, ann, root, tmp_path)
    assert report["metrics"]["dcsm"]["n_tied"] == 0 and report["metrics"]["clip"]["n_tied"] == 0
    assert report["n_truncation_identical"] == {"controlled_a": 0}
    assert "| n tied |" not in Path(report["markdown"]).read_text()


# ---------------------------------------------------------------------------------------------
# (d) synthetic category accuracy
# ---------------------------------------------------------------------------------------------


def test_category_accuracy_counts_planted_ties_as_wrong() -> None:
    scores = {
        "dcsm": torch.tensor([[0.9, 0.9, 0.1], [0.2, 0.8, 0.1], [0.7, 0.1, 0.1], [0.5, 0.5, 0.5]]),
        "clip": torch.tensor([[0.9, 0.1, 0.1], [0.3, 0.3, 0.1], [0.6, 0.2, 0.2], [0.1, 0.2, 0.9]]),
        "label": torch.tensor([0, 1, 0, 2]),
        "category": torch.tensor([0, 0, 1, 1]),
    }
    res = category_accuracy(scores, ["binding", "spatial"])
    # dcsm: tie (wrong), right, right, tie (wrong); clip: right, tie (wrong), right, right
    assert res["dcsm"] == {"all": 0.5, "binding": 0.5, "spatial": 0.5}
    assert res["clip"] == {"all": 0.75, "binding": 0.5, "spatial": 1.0}
    assert res["n_tied"] == {"dcsm": {"all": 2, "binding": 1, "spatial": 1}, "clip": {"all": 1, "binding": 1, "spatial": 0}}
    assert res["n"] == {"all": 4, "binding": 2, "spatial": 2}
    table = format_synthetic_table({"test": res}, ["binding", "spatial"])
    assert "| test | binding | 2 | 50.0 | 50.0 |" in table
    assert TIE_RULE in table and "test: n tied DCSM 2, CLIP 1" in table
