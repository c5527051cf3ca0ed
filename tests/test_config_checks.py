"""Early config checks: bad values exit 2 with one line naming the key, before anything is built;
single strings are accepted where a list is expected; a batch mixing option counts names its
shard and sample."""

from __future__ import annotations

from pathlib import Path

import pytest

import dcsm.commands.cache_features as cache_features_cmd
import dcsm.commands.evaluate as evaluate_cmd
import dcsm.commands.train as train_cmd
import dcsm.train.fit as train_fit
from dcsm.commands.synthetic_shards import main as make_synthetic_shards
from dcsm.config_checks import list_keys
from dcsm.commands.runner import USAGE_EXIT, command_config, run_command

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs" / "smoke.yaml")


class Built(AssertionError):
    """Raised by the encoder stand-in: the command built something before failing."""


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building an encoder fails the test: the checks must come first."""

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003
        raise Built("the encoder was built before the config was checked")

    for mod in (train_fit, evaluate_cmd, cache_features_cmd):
        monkeypatch.setattr(mod, "FrozenCLIP", refuse)


def _exit_line(main, argv: list[str], capsys: pytest.CaptureFixture) -> str:  # noqa: ANN001
    """Run a command as the CLI does; it must exit 2 with one ``error:`` line; returns the line."""
    with pytest.raises(SystemExit) as exc:
        run_command(main, argv)
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("value", ["-1", "0"])
def test_batch_size_below_one_names_the_key(value: str, tmp_path: Path, no_build, capsys) -> None:  # noqa: ANN001
    err = _exit_line(train_cmd.main, ["--config", SMOKE, f"run_dir={tmp_path}", f"data.batch_size={value}"], capsys)
    assert f"data.batch_size={value} must be >= 1" in err and "Fix: data.batch_size=" in err
    assert not (tmp_path / "checkpoints").exists()  # nothing written


def test_max_epochs_zero_names_the_key(tmp_path: Path, no_build, capsys) -> None:  # noqa: ANN001
    err = _exit_line(train_cmd.main, ["--config", SMOKE, f"run_dir={tmp_path}", "trainer.max_epochs=0"], capsys)
    assert "trainer.max_epochs=0 must be >= 1" in err and "last.ckpt" not in err


def test_non_integer_value_names_the_key(tmp_path: Path, no_build, capsys) -> None:  # noqa: ANN001
    err = _exit_line(train_cmd.main, ["--config", SMOKE, f"run_dir={tmp_path}", "eval.batch_size=many"], capsys)
    assert "eval.batch_size='many' must be a whole number >= 1" in err


def test_single_strings_become_one_element_lists() -> None:
    cfg = command_config(["eval.annotation_files=data/a.json", "eval.splits=test", "eval.baselines=RN50:none",
                          "data.categories=binding", "diagnostics.callback=heads"])
    assert cfg["eval"]["annotation_files"] == ["data/a.json"]
    assert cfg["eval"]["splits"] == ["test"]
    assert cfg["eval"]["baselines"] == ["RN50:none"]
    assert cfg["data"]["categories"] == ["binding"]
    assert cfg["synthetic_shards"]["categories"] == ["binding"]  # interpolated from data.categories
    assert cfg["diagnostics"]["callback"] == ["heads"]
    # lists stay lists; the list keys come from configs/default.yaml
    assert command_config(["eval.splits=[test,shifted]"])["eval"]["splits"] == ["test", "shifted"]
    assert {"eval.annotation_files", "eval.splits", "data.val_splits", "diagnostics.pruning.ks"} <= set(list_keys())


def test_annotation_file_without_brackets_reaches_the_loader(tmp_path: Path, no_build, capsys) -> None:  # noqa: ANN001
    """The one path is read as one file (its name in the error), not split into characters."""
    missing = tmp_path / "absent.json"
    err = _exit_line(evaluate_cmd.main, ["eval.benchmark=whatsup", f"eval.annotation_files={missing}",
                                          f"eval.image_root={tmp_path}"], capsys)
    assert "eval.checkpoint" in err  # the next problem in line, not a per-character one
    cfg = command_config([f"eval.annotation_files={missing}"])
    from dcsm.data.benchmarks.dataset import load_items

    with pytest.raises(ValueError, match=f"not found: \\['{missing}'\\]"):
        load_items("whatsup", cfg["eval"]["annotation_files"], tmp_path)


def test_missing_shard_folder_does_not_exist(tmp_path: Path, no_build, capsys) -> None:  # noqa: ANN001
    folder = tmp_path / "no_such_shards"
    err = _exit_line(train_cmd.main, ["--config", SMOKE, f"run_dir={tmp_path / 'run'}", "data.source=shards",
                                      f"data.train_shards={folder}"], capsys)
    assert f"data.train_shards: '{folder}' does not exist" in err and "manifest.json in" not in err
    pattern = f"{tmp_path}/shard-{{000000..000001}}.tar"
    err = _exit_line(train_cmd.main, ["--config", SMOKE, f"run_dir={tmp_path / 'run'}", "data.source=features",
                                      f"data.train_shards={tmp_path}", f"data.val_shards='{pattern}'"], capsys)
    assert f"data.val_shards: '{tmp_path}/shard-000000.tar' does not exist" in err
    err = _exit_line(cache_features_cmd.main, [f"cache_features.shards={folder}", f"cache_features.out={tmp_path / 'f'}"],
                     capsys)
    assert f"cache_features.shards: '{folder}' does not exist" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "f").exists()


def test_batch_mixing_option_counts_names_shard_and_key(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    for k in (3, 4):
        make_synthetic_shards([f"synthetic_shards.out={tmp_path / f'k{k}'}", "synthetic_shards.num_samples=2",
                               f"synthetic_shards.num_options={k}", "synthetic_shards.image_size=96",
                               f"synthetic_shards.prefix=k{k}"])
    shards = f"[{tmp_path / 'k4' / 'k4-000000.tar'},{tmp_path / 'k3' / 'k3-000000.tar'}]"
    err = _exit_line(train_cmd.main, ["--config", SMOKE, f"run_dir={tmp_path / 'run'}", "data.source=shards",
                                      f"data.train_shards={shards}", "data.shuffle_buffer=0", "data.batch_size=4",
                                      "logger.kind=none", "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
                                      "checkpoint.monitor=null"], capsys)
    assert "a batch mixes samples with [3, 4] caption options" in err
    assert f"of shard '{tmp_path / 'k3' / 'k3-000000.tar'}' has 3" in err
    assert "sample '" in err and "Fix:" in err


def test_dataloader_worker_errors_print_their_own_last_line() -> None:
    from dcsm.commands.runner import one_line

    wrapped = ValueError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                         '  File "x.py", line 1, in f\n    raise ValueError(...)\n'
                         "ValueError: a batch mixes samples with [3, 4] caption options: sample 'k' of shard 's' has 3\n")
    assert one_line(wrapped) == "a batch mixes samples with [3, 4] caption options: sample 'k' of shard 's' has 3"
    assert one_line(ValueError("plain\n  message")) == "plain message"


def test_monitor_without_validation_data_fails_before_training(tmp_path: Path, no_build, capsys) -> None:  # noqa: ANN001
    err = _exit_line(train_cmd.main, ["--config", SMOKE, f"run_dir={tmp_path}", "data.val_splits=[]"], capsys)
    assert "checkpoint.monitor=val/acc needs validation data, but data.val_splits is empty" in err
    assert "checkpoint.monitor=null" in err and not (tmp_path / "checkpoints").exists()
