"""Config files: YAML syntax errors in one line, shipped config names, --help."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcsm.commands.train import main as train_main
from dcsm.config import CONFIG_DIR, ConfigError, load_yaml, resolve_config_path
from dcsm.commands.runner import run_command


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: default.yaml\ntrainer:\n  max_epochs: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(bad)
    msg = str(info.value)
    assert str(bad) in msg and "line" in msg and "YAML syntax error" in msg and "\n" not in msg


def test_shipped_config_names_resolve_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("smoke", "smoke.yaml", "configs/smoke.yaml"):
        assert resolve_config_path(name) == CONFIG_DIR / "smoke.yaml"
    with pytest.raises(ConfigError, match=r"does not exist.*shipped config name"):
        resolve_config_path("nope.yaml")


def test_help_prints_usage_and_exits_0(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        run_command(train_main, ["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: [--config FILE|NAME] [key=value ...]" in out and "default.yaml" in out
