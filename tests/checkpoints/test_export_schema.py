"""Head exports trust nothing in their JSON (issue 21 section 3) and no loaded model holds a NaN
(section 2, at load): each tampered field is one line naming it, before anything is built; a hand
edit is caught by the config digest; a non-finite tensor or setting in a checkpoint or export is
refused naming it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

import dcsm
from dcsm.commands.evaluate import main as evaluate_main
from dcsm.commands.export_head import main as export_main
from dcsm.checkpoints.finite_load import NonFiniteCheckpointError
from dcsm.checkpoints.export import CONFIG_DIGEST_KEY, HeadExportError, _sha256, config_digest
from dcsm.commands.runner import USAGE_EXIT, run_command
from tests.suite_helpers import write_checkpoint


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory, encoder) -> tuple[Path, Path]:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("schema")
    ckpt = write_checkpoint(tmp / "run" / "checkpoints" / "best.ckpt", encoder, seed=5)
    export_main([f"export_head.checkpoint={ckpt}", f"export_head.out={tmp / 'head'}"])
    return ckpt, tmp / "head"


def _copy(stem: Path, tmp_path: Path, edit: Callable[[dict], Any] | None = None, raw: str | None = None,
          sign: bool = True) -> Path:
    """The export copied to tmp_path/t.*, its JSON edited by ``edit`` (or replaced by ``raw``), re-signed."""
    out = tmp_path / "t"
    out.with_suffix(".safetensors").write_bytes(stem.with_suffix(".safetensors").read_bytes())
    record = json.loads(stem.with_suffix(".json").read_text())
    if edit is not None:
        edit(record)
    if sign and raw is None and CONFIG_DIGEST_KEY in record:
        try:
            record[CONFIG_DIGEST_KEY] = config_digest(record)
        except ValueError:  # NaN/inf: not representable in the canonical JSON (the schema refuses it first)
            pass
    out.with_suffix(".json").write_text(raw if raw is not None else json.dumps(record))
    return out.with_suffix(".safetensors")


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(record: dict) -> None:
        *parents, last = path.split(".")
        node = record
        for p in parents:
            node = node[p]
        node[last] = value
    return edit


def _drop(path: str) -> Callable[[dict], None]:
    def edit(record: dict) -> None:
        *parents, last = path.split(".")
        node = record
        for p in parents:
            node = node[p]
        del node[last]
    return edit


TAMPERED = {  # the 12 probes -> what the one line says
    "missing_scorer_layout": (_drop("scorer.layout"), "lacks key 'scorer.layout'"),
    "unknown_scorer_key": (_set("scorer.kernel", 5), "field scorer.kernel is not a known key"),
    "channels_string": (_set("scorer.channels", "32"), "field scorer.channels='32' must be a whole number in [1, 4096]"),
    "channels_negative": (_set("scorer.channels", -5), "field scorer.channels=-5 must be a whole number in [1, 4096]"),
    "channels_1e9": (_set("scorer.channels", 10**9), "field scorer.channels=1000000000 must be a whole number"),
    "hidden_1e12": (_set("scorer.hidden", 10**12), "field scorer.hidden=1000000000000 must be a whole number"),
    "max_tokens_1e10": (_set("encoder.max_tokens", 10**10), "field encoder.max_tokens=10000000000 must be a whole number in [1, 1024]"),
    "format_version_string": (_set("format_version", "1"), "field format_version='1' must be a whole number in [1, 2]"),
    "run_config_list": (_set("run_config", [1, 2]), "field run_config must be an object, not list"),
    "categories_int": (_set("categories", 5), "field categories=5 must be a list"),
    "lexicon_int": (_set("functional_rows.lexicon", 7), "field functional_rows.lexicon=7 must be a list"),
    "deeply_nested": (_set("run_config", None), "nests deeper than 32 levels"),  # the JSON text is replaced below
    # beyond the 12
    "eps_nan": (_set("maps.eps", float("nan")), "field maps.eps=nan must be a finite number in (0.0, 1.0]"),
    "eps_inf": (_set("maps.eps", float("inf")), "field maps.eps=inf must be a finite number"),
    "unknown_top_key": (_set("code", "import os"), "field code is not a known key"),
    "unknown_run_config_key": (_set("run_config.eval.spilts", ["test"]), "field run_config.eval.spilts is not a known key"),
    "run_config_bad_type": (_set("run_config.data.batch_size", "64"), "field run_config.data.batch_size='64' must be a whole number"),
    "tensors_path": (_set("tensors", "../../etc/x.safetensors"), "field tensors='../../etc/x.safetensors' must match"),
    "sha256_not_hex": (_set("sha256", "zz"), "field sha256='zz' must match"),
    "layout_choice": (_set("scorer.layout", "transformer"), "field scorer.layout='transformer' must be one of ['map', 'grid', 'reference']"),
    "missing_digest_v2": (_drop(CONFIG_DIGEST_KEY), "lacks key 'config_sha256'"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_json_is_one_line_naming_the_field(case: str, export, tmp_path: Path) -> None:  # noqa: ANN001
    _, stem = export
    edit, expected = TAMPERED[case]
    raw = '{"format": "dcsm-head", "x": ' + "[" * 100_000 + "]" * 100_000 + "}" if case == "deeply_nested" else None
    path = _copy(stem, tmp_path, edit, raw=raw)
    with pytest.raises(HeadExportError) as info:
        dcsm.load(path, device="cpu")
    msg = str(info.value)
    assert expected in msg and str(path.with_suffix(".json")) in msg and "\n" not in msg, msg


@pytest.mark.parametrize("case", ["channels_1e9", "deeply_nested", "eps_nan"])
def test_tampered_json_exits_2_in_evaluate(case: str, export, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # noqa: ANN001
    _, stem = export
    edit, expected = TAMPERED[case]
    raw = "[" * 50_000 + "]" * 50_000 if case == "deeply_nested" else None
    path = _copy(stem, tmp_path, edit, raw=raw).with_suffix(".json")  # the JSON named as the checkpoint
    with pytest.raises(SystemExit) as exc:
        run_command(evaluate_main, [f"eval.checkpoint={path}", "logger.kind=none", f"run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == USAGE_EXIT and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in err and (expected if case != "deeply_nested" else "nests deeper than 32 levels") in err, err


def test_hand_edit_is_a_digest_mismatch(export, tmp_path: Path) -> None:  # noqa: ANN001
    _, stem = export
    for edit in (_set("scorer.dropout", 0.5), _set("run_config.seed", 7), _set("sha256", "0" * 64), _set("categories", ["x"])):
        path = _copy(stem, tmp_path, edit, sign=False)
        with pytest.raises(HeadExportError, match=r"'.*t\.json' does not match its config_sha256 \(changed after export"):
            dcsm.load(path, device="cpu")


def test_version_1_export_still_loads(export, tmp_path: Path, encoder) -> None:  # noqa: ANN001
    """An export written before the config digest (format_version 1) loads, schema-checked, and scores as the checkpoint."""
    ckpt, stem = export

    def v1(record: dict) -> None:
        record["format_version"] = 1
        del record[CONFIG_DIGEST_KEY]

    path = _copy(stem, tmp_path, v1)
    model, cfg = dcsm.checkpoints.load.load_dcsm(str(path), encoder=encoder)
    want = dcsm.checkpoints.load.load_dcsm(str(ckpt), encoder=encoder)[0]
    assert all(torch.equal(a, b) for a, b in zip(model.head.state_dict().values(), want.head.state_dict().values()))
    bad = _copy(stem, tmp_path, lambda r: (v1(r), _set("scorer.channels", "32")(r)))
    with pytest.raises(HeadExportError, match="field scorer.channels='32'"):
        dcsm.load(bad, device="cpu")


def test_nonfinite_export_tensor_is_refused(export, tmp_path: Path) -> None:  # noqa: ANN001
    _, stem = export
    path = _copy(stem, tmp_path)
    state = load_file(str(path))
    state["scorer.fc1.weight"][3, 7] = float("nan")
    save_file(state, str(path))
    record = json.loads(path.with_suffix(".json").read_text())
    record["sha256"] = _sha256(path)  # a consistent export of a diverged head
    record[CONFIG_DIGEST_KEY] = config_digest(record)
    path.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(NonFiniteCheckpointError, match=r"head export '.*t\.safetensors': head tensor 'scorer\.fc1\.weight' holds 1 NaN/inf"):
        dcsm.load(path, device="cpu")


def _nan_checkpoint(real: Path, tmp_path: Path, where: str) -> Path:
    ck = torch.load(real, weights_only=True)
    if where == "tensor":
        ck["state_dict"]["head.functional_rows.rows"][0, 0] = float("inf")
    else:
        ck["hyper_parameters"]["cfg"]["maps"]["eps"] = float("nan")
    path = tmp_path / "run" / "checkpoints" / f"nan_{where}.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, path)
    return path


NONFINITE = {"tensor": "head tensor 'head.functional_rows.rows' holds 1 NaN/inf value(s)",
             "setting": "stores the non-finite setting maps.eps=nan"}


@pytest.mark.parametrize("where", sorted(NONFINITE))
def test_nonfinite_checkpoint_is_refused_at_every_entry_point(where: str, export, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:  # noqa: ANN001
    from dcsm.commands.train import main as train_main
    from tests.checkpoints.test_no_code_runs import SMOKE, TINY

    ckpt, _ = export
    path = _nan_checkpoint(ckpt, tmp_path, where)
    with pytest.raises(NonFiniteCheckpointError, match=re.escape(NONFINITE[where])):
        dcsm.load(path, device="cpu")
    commands = [
        (evaluate_main, [f"eval.checkpoint={path}", "logger.kind=none", "eval.benchmark=synthetic"]),
        (evaluate_main, ["eval.benchmark=all", f"eval.checkpoint={path}", f"eval.data_root={tmp_path}", "logger.kind=none"]),
        (export_main, [f"export_head.checkpoint={path}", f"export_head.out={tmp_path / 'out'}"]),
        (train_main, ["--config", SMOKE, f"run_dir={tmp_path / 'fresh'}", f"resume={path}", *TINY]),
    ]
    for main, argv in commands:
        with pytest.raises(SystemExit) as exc:
            run_command(main, argv)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == USAGE_EXIT and len(err.splitlines()) == 1 and f"'{path}'" in err, err
        assert NONFINITE[where] in err, err
    assert not (tmp_path / "out.json").exists()
