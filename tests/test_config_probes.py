"""Every bad config is one line, before anything runs (issue 21, section 4): each probe is an
in-process ``main()`` call as the CLI makes it; it must exit 2 with one ``error:`` line naming
the key or file, within seconds, before any encoder or model is built."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Callable

import pytest

import dcsm.commands.cache_features as cache_features_cmd
import dcsm.commands.evaluate as evaluate_cmd
import dcsm.commands.synthetic_shards as synthetic_shards_cmd
import dcsm.commands.train as train_cmd
import dcsm.train.fit as train_fit
from dcsm.commands.from_reference import main as from_reference_main
from dcsm.commands.miniature_benchmarks import main as miniature_main
from dcsm.config import parse_cli
from dcsm.config_checks import check_values
from dcsm.config_schema import schema, train_schema
from dcsm.commands.pretrain_toy_clip import main as pretrain_main
from dcsm.commands.runner import USAGE_EXIT, command_config, run_command

PROBE_SECONDS = 60  # a generous wall-clock guard on a loaded 2-core machine; probes take ~a second
TRAIN, EVALUATE = train_cmd.main, evaluate_cmd.main


class Built(AssertionError):
    """The command built an encoder before failing."""


@pytest.fixture(autouse=True)
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003
        raise Built("an encoder was built before the config was checked")

    for mod in (train_fit, evaluate_cmd, cache_features_cmd):
        monkeypatch.setattr(mod, "FrozenCLIP", refuse)


def _unwritable(tmp: Path) -> str:
    if os.geteuid() == 0:  # root writes anywhere a mode allows; /sys refuses new files even to root
        return "/sys/dcsm-probe/run"
    folder = tmp / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    return str(folder / "run")


def _write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def _cycle(tmp: Path) -> list[str]:
    _write(tmp, "b.yaml", "base: a.yaml\n")
    return ["--config", _write(tmp, "a.yaml", "base: b.yaml\nseed: 1\n")]


def _run_dir_file(tmp: Path) -> list[str]:
    return [f"run_dir={_write(tmp, 'a_file', 'x')}"]


def _smoke_dir(tmp: Path) -> list[str]:
    (tmp / "smoke").mkdir()
    os.chdir(tmp)
    return ["--config", "smoke"]


def _eval_output_dir(tmp: Path) -> list[str]:
    (tmp / "out").mkdir()
    return ["eval.checkpoint=x.ckpt", f"eval.output={tmp / 'out'}"]


ALIAS_BOMB = "eval.baselines=[&a [x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]]"

#: id -> (command, argv builder, what the one error line must say)
PROBES: dict[str, tuple[Callable, Callable[[Path], list[str]], str]] = {
    "base_cycle": (TRAIN, _cycle, "cycle"),
    "yaml_list_file": (TRAIN, lambda t: ["--config", _write(t, "l.yaml", "- a\n- b\n")], "not a mapping"),
    "yaml_scalar_file": (TRAIN, lambda t: ["--config", _write(t, "s.yaml", "just text\n")], "not a mapping"),
    "yaml_error_override": (TRAIN, lambda t: ["eval.splits=[test,"], "override 'eval.splits=[test,'"),
    "alias_bomb_override": (TRAIN, lambda t: [ALIAS_BOMB], "anchors and aliases"),
    "lr_abc": (TRAIN, lambda t: ["optim.lr=abc"], "optim.lr='abc'"),
    "min_lr_ratio_abc": (TRAIN, lambda t: ["optim.min_lr_ratio=abc"], "optim.min_lr_ratio='abc'"),
    "ema_decay_1": (TRAIN, lambda t: ["optim.ema_decay=1.0"], "optim.ema_decay=1.0"),
    "accelerator_tpu": (TRAIN, lambda t: ["trainer.accelerator=tpu"], "trainer.accelerator='tpu'"),
    "checkpoint_mode_foo": (TRAIN, lambda t: ["checkpoint.mode=foo"], "checkpoint.mode='foo'"),
    "devices_0": (TRAIN, lambda t: ["trainer.devices=0"], "trainer.devices=0"),
    "monitor_nope": (TRAIN, lambda t: ["checkpoint.monitor=val/nope"], "checkpoint.monitor=val/nope"),
    "run_dir_too_long": (TRAIN, lambda t: [f"run_dir={t / ('x' * 300)}"], "path too long"),
    "run_dir_a_file": (TRAIN, _run_dir_file, "is a file"),
    "run_dir_unwritable": (TRAIN, lambda t: [f"run_dir={_unwritable(t)}"], "cannot write"),
    "wandb_online_no_key": (TRAIN, lambda t: ["logger.kind=wandb", "logger.mode=online"], "logger.mode=online"),
    "eval_output_a_dir": (EVALUATE, _eval_output_dir, "eval.output="),
    "eval_splits_nope": (TRAIN, lambda t: ["eval.splits=[nope]"], "eval.splits=['nope']"),
    "eval_splits_nope_evaluate": (EVALUATE, lambda t: ["eval.splits=[nope]"], "eval.splits=['nope']"),
    "precision_bad": (TRAIN, lambda t: ["trainer.precision=31"], "trainer.precision=31"),
    "loss_kind_bad": (TRAIN, lambda t: ["loss.kind=hinge"], "loss.kind='hinge'"),
    "maps_eps_nan": (TRAIN, lambda t: ["maps.eps=.nan"], "maps.eps="),
    "missing_config_path": (TRAIN, lambda t: ["--config", str(t / "some" / "dir" / "smoke.yaml")], "does not exist"),
    "config_is_a_dir": (TRAIN, _smoke_dir, "is a folder"),
    "missing_base": (TRAIN, lambda t: ["--config", _write(t, "c.yaml", "base: nope.yaml\n")], "base: 'nope.yaml' does not exist"),
    "missing_base_path": (TRAIN, lambda t: ["--config", _write(t, "c.yaml", "base: ../x/smoke.yaml\n")], "does not exist"),
    "typo_in_file": (TRAIN, lambda t: ["--config", _write(t, "c.yaml", "eval:\n  spilts: [test]\n")], "eval.spilts"),
    "typo_in_file_evaluate": (EVALUATE, lambda t: ["--config", _write(t, "c.yaml", "eval:\n  spilts: [test]\n")], "eval.spilts"),
    "typo_in_override": (TRAIN, lambda t: ["eval.spilts=[test]"], "eval.spilts"),
    "miniature_out_a_file": (miniature_main, lambda t: [f"miniature_benchmarks.out={_write(t, 'f', 'x')}"], "is a file"),
    "pretrain_out_a_file": (pretrain_main, lambda t: [f"out_dir={_write(t, 'f', 'x')}"], "out_dir="),
    "pretrain_typo": (pretrain_main, lambda t: ["optim.stepz=3"], "optim.stepz"),
    "from_reference_out_a_file": (from_reference_main, lambda t: [f"reference_data.data_path={t}",
                                                                  f"reference_data.out={_write(t, 'f', 'x')}"], "is a file"),
    "shards_out_a_file": (synthetic_shards_cmd.main,
                          lambda t: [f"synthetic_shards.out={_write(t, 'f', 'x')}", "synthetic_shards.num_samples=2"], "is a file"),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_bad_config_is_one_line_before_anything_runs(probe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    main, build, expected = PROBES[probe]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a W&B key
    monkeypatch.delenv("NETRC", raising=False)
    argv = build(tmp_path)
    if main in (TRAIN, EVALUATE) and not any(a.startswith("run_dir=") for a in argv):
        argv.append(f"run_dir={tmp_path / 'run'}")

    def too_slow(*_):  # noqa: ANN002
        raise TimeoutError(f"probe {probe} ran past {PROBE_SECONDS} s")

    old = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(PROBE_SECONDS)
    try:
        with pytest.raises(SystemExit) as exc:
            run_command(main, argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    assert expected in err[0], err[0]
    assert "Fix:" in err[0], err[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_good_configs_pass_every_rule() -> None:
    """Every shipped config (and the values the README shows) passes the table it is checked by."""
    for name in ("default", "smoke", "smoke_random", "reference"):
        cfg = command_config(["--config", name])
        check_values(cfg, train_schema())
    for argv in (["trainer.devices=[0,1]"], ["trainer.devices=auto"], ["trainer.devices=-1"], ["trainer.precision=bf16-mixed"],
                 ["checkpoint.monitor=shifted/acc_spatial"], ["optim.lr=1"], ["trainer.deterministic=warn"]):
        cfg = command_config(argv)
        check_values(cfg, train_schema())
    assert "optim.lr" in schema() and "trainer.precision" in train_schema()


def test_a_path_is_a_path_but_a_bare_name_finds_the_shipped_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_cli(["--config", "smoke"])["run_dir"] == "runs/smoke"
    (tmp_path / "mine.yaml").write_text("base: smoke_random.yaml\nseed: 7\n")  # a bare base: beside it or shipped
    cfg = parse_cli(["--config", "mine.yaml"])
    assert cfg["seed"] == 7 and cfg["run_dir"] == "runs/smoke_random"
    (tmp_path / "plain.yaml").write_text("seed: 3\n")  # no base: the defaults fill in every other key
    assert parse_cli(["--config", str(tmp_path / "plain.yaml")])["optim"]["lr"] == pytest.approx(1e-3)


def test_online_wandb_passes_with_a_key_from_env_or_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dcsm.config_checks import check_wandb_login, wandb_key_found

    online = {"logger": {"kind": "wandb", "mode": "online"}}
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    assert not wandb_key_found()
    check_wandb_login({"logger": {"kind": "wandb", "mode": "offline"}})  # offline needs no key
    check_wandb_login({"logger": {"kind": "csv", "mode": "online"}})  # nor does another logger
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    check_wandb_login(online)
    monkeypatch.delenv("WANDB_API_KEY")
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    check_wandb_login(online)  # what `wandb login` writes
