"""Diagnostics runs never overwrite each other's numbers, and honour eval.output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dcsm.diagnostics.run as runner
from dcsm.commands import evaluate


def _report(names: list[str], encoder: dict, sections: dict, files: dict) -> dict:
    return {"meta": {"diagnostics": names, "encoder": encoder}, **sections, "files": files}


def test_a_second_diagnostics_run_keeps_the_first_ones_numbers(tmp_path: Path) -> None:
    enc = {"model": "ViT-B-32", "pretrained": None}
    png = tmp_path / "head_scores.png"
    png.write_bytes(b"png")
    path = tmp_path / "diagnostics.json"
    first = runner.merge_previous(path, _report(["heads"], enc, {"heads": {"ranking": ["L0H1"]}, "textspan": [1]},
                                                {"head_scores_png": str(png)}), ["heads"])
    path.write_text(json.dumps(first))
    second = runner.merge_previous(path, _report(["center_bias"], enc, {"center_bias": {"baseline": {}}}, {}), ["center_bias"])
    assert second["heads"] == {"ranking": ["L0H1"]} and second["textspan"] == [1] and "center_bias" in second
    assert second["files"]["head_scores_png"] == str(png)  # still described by the JSON
    assert second["meta"]["diagnostics"] == ["heads", "center_bias"]
    assert second["meta"]["runs"]["heads"]["diagnostics"] == ["heads"]
    assert second["meta"]["runs"]["center_bias"]["diagnostics"] == ["center_bias"]
    # a rerun of heads replaces heads only
    third = runner.merge_previous(path, _report(["heads"], enc, {"heads": {"ranking": ["L1H0"]}}, {}), ["heads"])
    assert third["heads"] == {"ranking": ["L1H0"]} and third["textspan"] == [1]


def test_diagnostics_of_another_encoder_are_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "diagnostics.json"
    path.write_text(json.dumps(_report(["heads"], {"model": "A"}, {"heads": {}}, {})))
    new = runner.merge_previous(path, _report(["center_bias"], {"model": "B"}, {"center_bias": {}}, {}), ["center_bias"])
    assert "heads" not in new and not path.exists()
    kept = list(tmp_path.glob("diagnostics-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["meta"]["encoder"] == {"model": "A"}


@pytest.mark.parametrize("output", [None, "elsewhere/results.json"])
def test_eval_diagnostics_land_beside_eval_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output) -> None:  # noqa: ANN001
    seen = {}

    def fake(names, encoder, cfg, out_dir, **kw):  # noqa: ANN001, ANN202
        seen["out"] = Path(out_dir)
        return {"files": {"json": str(Path(out_dir) / "diagnostics.json")}}

    monkeypatch.setattr(runner, "run_diagnostics", fake)
    monkeypatch.setattr(evaluate, "FrozenCLIP", lambda spec: type("E", (), {"to": lambda self, d: self})())
    cfg = {"eval": {"diagnostics": ["heads"], "output": str(tmp_path / output) if output else None},
           "encoder": {"model": "ViT-B-32", "pretrained": None}, "diagnostics": {}, "run_dir": str(tmp_path / "run"),
           "progress": False}
    evaluate.run_eval_diagnostics(cfg, None)
    want = (tmp_path / "elsewhere" if output else tmp_path / "run") / "diagnostics"
    assert seen["out"] == want
