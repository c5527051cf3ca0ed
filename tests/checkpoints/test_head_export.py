"""Head export: a checkpoint's head -> safetensors + JSON; loading it back (dcsm.load, load_dcsm,
evaluate.py) gives identical scores without unpickling; bad exports exit 2 with one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import dcsm
from dcsm.api import Scorer
from dcsm.checkpoints.load import load_dcsm
from dcsm.commands.evaluate import main as evaluate_main
from dcsm.commands.export_head import main as export_main
from dcsm.model.functional_rows import DEFAULT_LEXICON
from dcsm.checkpoints.export import config_digest
from dcsm.commands.runner import USAGE_EXIT, run_command
from tests.suite_helpers import tiny_cfg, write_checkpoint
from tests.eval.test_benchmark_eval import _draw

CAPTIONS = [["a red cube left of a blue ball", "a blue cube left of a red ball", "no cube"],
            ["a dog under a table", "a table under a dog", "a cat"]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, encoder) -> tuple[Path, Path, dict]:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("export")
    ckpt = write_checkpoint(tmp / "run" / "checkpoints" / "best.ckpt", encoder, seed=3)
    record = export_main([f"export_head.checkpoint={ckpt}", f"export_head.out={tmp / 'exports' / 'head'}"])
    return ckpt, tmp / "exports" / "head", record


def _exit_line(main, argv: list[str], capsys: pytest.CaptureFixture) -> str:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        run_command(main, argv)
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_export_writes_tensors_and_rebuild_config(exported) -> None:  # noqa: ANN001
    ckpt, stem, record = exported
    tensors, config = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    assert tensors.is_file() and config.is_file()
    saved = json.loads(config.read_text())
    assert saved == {k: v for k, v in record.items() if k != "files"}
    cfg = tiny_cfg()
    assert saved["format"] == "dcsm-head" and saved["tensors"] == "head.safetensors"
    assert saved["encoder"] == {**cfg["encoder"]}  # the spec the frozen CLIP is rebuilt from
    assert saved["functional_rows"] == {**cfg["functional_rows"], "lexicon": list(DEFAULT_LEXICON)}  # phrases written out
    assert saved["maps"] == cfg["maps"] and saved["scorer"] == cfg["scorer"]
    assert saved["sha256"] == hashlib.sha256(tensors.read_bytes()).hexdigest()
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    tensors_back = load_file(str(tensors))
    assert set(tensors_back) == {k[len("head."):] for k in state} and saved["num_tensors"] == len(tensors_back)
    assert all(torch.equal(tensors_back[k[len("head."):]], v) for k, v in state.items())
    assert saved["source_checkpoint"] == str(ckpt)


def test_loaded_export_scores_identically(exported, tmp_path: Path) -> None:  # noqa: ANN001
    ckpt, stem, _ = exported
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    for p in images:
        _draw(p)
    from_ckpt = dcsm.load(ckpt, device="cpu")
    want = from_ckpt.score_options(images, CAPTIONS)
    scorer = dcsm.load(stem.with_suffix(".safetensors"), device="cpu")  # the encoder rebuilt from the recorded spec
    assert torch.equal(scorer.score_options(images, CAPTIONS), want)
    assert torch.equal(scorer.clip_score_options(images, CAPTIONS), from_ckpt.clip_score_options(images, CAPTIONS))
    model, cfg = load_dcsm(str(stem.with_suffix(".json")), encoder=from_ckpt.model.encoder)  # the JSON names the pair too
    assert torch.equal(Scorer(model, cfg, device="cpu").score_options(images, CAPTIONS), want)
    assert cfg["encoder"] == from_ckpt.cfg["encoder"] and cfg["scorer"] == from_ckpt.cfg["scorer"]
    assert not model.training


def test_evaluate_scores_an_export_as_its_checkpoint(exported, tmp_path: Path) -> None:  # noqa: ANN001
    ckpt, stem, _ = exported
    root = tmp_path / "data"
    rows = [{"image_path": f"data/controlled_images/mug_{rel}_table.jpeg",
             "caption_options": [f"A mug {cap} a table", "A mug on a table", "A mug under a table", "A mug in a table"]}
            for rel, cap in (("left_of", "to the left of"), ("right_of", "to the right of"))]
    for r in rows:
        _draw(root / "controlled_images" / Path(r["image_path"]).name)
    ann = tmp_path / "controlled_images_dataset.json"
    ann.write_text(json.dumps(rows))
    common = ["eval.benchmark=whatsup", f"eval.annotation_files={ann}", f"eval.image_root={root}", "eval.num_workers=0",
              "eval.max_failures=10", "logger.kind=none", "progress=false"]
    reports = [evaluate_main([*common, f"eval.checkpoint={c}", f"eval.output={tmp_path / name}.json"])
               for name, c in (("ckpt", ckpt), ("export", stem.with_suffix(".safetensors")))]
    assert reports[0]["metrics"] == reports[1]["metrics"] and reports[1]["n_scored"] == 2
    assert [f["dcsm_scores"] for f in reports[0]["failures"]] == [f["dcsm_scores"] for f in reports[1]["failures"]]


def test_bad_exports_exit_2_in_one_line(exported, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # noqa: ANN001
    ckpt, stem, _ = exported
    # an existing export is not overwritten unless asked
    err = _exit_line(export_main, [f"export_head.checkpoint={ckpt}", f"export_head.out={stem}"], capsys)
    assert f"{stem}.safetensors exists" in err and "export_head.overwrite=true" in err
    err = _exit_line(export_main, [f"export_head.out={tmp_path / 'x'}"], capsys)
    assert "export_head.checkpoint is not set" in err

    # tensors changed after export: refused by the recorded sha256
    bad = tmp_path / "changed"
    for suffix in (".safetensors", ".json"):
        (bad.parent / f"changed{suffix}").write_bytes(stem.with_suffix(suffix).read_bytes())
    data = bytearray(bad.with_suffix(".safetensors").read_bytes())
    data[-1] ^= 0xFF
    bad.with_suffix(".safetensors").write_bytes(bytes(data))
    err = _exit_line(evaluate_main, ["eval.benchmark=whatsup", f"eval.annotation_files={tmp_path / 'a.json'}",
                                     f"eval.checkpoint={bad}.safetensors", "logger.kind=none"], capsys)
    assert f"'{bad}.safetensors' does not match the sha256 in '{bad}.json'" in err and "Fix:" in err

    # a config without a key the rebuild needs names it
    cfg = json.loads(stem.with_suffix(".json").read_text())
    del cfg["scorer"]
    (tmp_path / "nokey.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=f"'{tmp_path / 'nokey.json'}' lacks key 'scorer'"):
        dcsm.load(tmp_path / "nokey.json", device="cpu")
    # the tensors without their config
    (tmp_path / "alone.safetensors").write_bytes(stem.with_suffix(".safetensors").read_bytes())
    with pytest.raises(ValueError, match="has no config .*alone.json' beside it"):
        dcsm.load(tmp_path / "alone.safetensors", device="cpu")
    # a hand edit of the config is caught by its digest; re-signed, its head does not fit the tensors (named)
    cfg = json.loads(stem.with_suffix(".json").read_text())
    cfg["scorer"]["channels"] = 8
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"other{suffix}").write_bytes(stem.with_suffix(suffix).read_bytes())
    (tmp_path / "other.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="other.json' does not match its config_sha256 .changed after export"):
        load_dcsm(str(tmp_path / "other.safetensors"))
    cfg["config_sha256"] = config_digest(cfg)
    (tmp_path / "other.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"other.json': scorer.channels does not fit the tensors in .*other.safetensors' \(scorer.channels=8; "):
        load_dcsm(str(tmp_path / "other.safetensors"))


@pytest.mark.parametrize("kind", ["ckpt", "export"])
def test_an_encoder_of_another_model_is_refused_before_a_head_is_built(kind: str, exported, vit_b32_encoder, encoder) -> None:  # noqa: ANN001
    """Every file kind a head is loaded from, with an encoder handed in: another architecture is
    one line naming both models (the head's grid and channels follow its encoder); the same
    architecture (evaluate.py's encoder.pretrained override) loads."""
    ckpt, stem, _ = exported
    path = str(ckpt if kind == "ckpt" else stem.with_suffix(".safetensors"))
    with pytest.raises(ValueError, match=r"trained on encoder.model=dcsm-toy-ViT, not on the encoder given \(ViT-B-32\)") as err:
        load_dcsm(path, encoder=vit_b32_encoder)
    assert len(str(err.value).splitlines()) == 1
    same = load_dcsm(path, encoder=encoder)[0]
    assert same.encoder is encoder
