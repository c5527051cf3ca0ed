"""The one table of config rules (issue 23: every string-valued config key is checked against its
allowed values before anything is built; issue 21 section 4: types and choices of every key).

* Every leaf key of every shipped config (``configs/*.yaml`` merged onto the defaults of the
  command that reads it, as the commands do) has a rule, and the shipped value passes it: a key
  added later without a rule fails here.
* For every key whose rule holds names (a choice, a list of choices, ``default`` or a list,
  ``auto`` or a file, a torch device), a typo exits 2 with one ``error:`` line naming the key, the
  value and the allowed values, in-process through the command's own ``main``, within seconds
  and before any model is built.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import open_clip
import pytest

import dcsm.commands.cache_features as cache_features_cmd
import dcsm.commands.controlled as controlled_cmd
import dcsm.commands.evaluate as evaluate_cmd
import dcsm.commands.export_head as export_head_cmd
import dcsm.commands.miniature_benchmarks as miniature_cmd
import dcsm.commands.format_transfer as format_transfer_cmd
import dcsm.commands.pair_shards as pair_shards_cmd
import dcsm.commands.synthetic_shards as synthetic_shards_cmd
import dcsm.commands.train as train_cmd
import dcsm.train.fit as train_fit
import dcsm.commands.pretrain_toy_clip as pretrain_mod
from dcsm.commands import from_reference as from_reference_cmd
from dcsm.config import CONFIG_DIR, DEFAULT_CONFIG, parse_cli, to_plain
from dcsm.config_checks import check_config, check_values, violation
from dcsm.config_schema import (CHOICE, CHOICE_LIST, DEVICE, NAME_OR_FILE, NAME_OR_LIST, NAMED_KINDS, Rule, schema,
                                show, train_schema)
from dcsm.commands.runner import USAGE_EXIT, run_command

TYPO_SECONDS = 10  # issue 23: a typo exits 2 in under 10 s; in-process it takes milliseconds

#: A command's own defaults (the file every other key of its config comes from) -> its main.
COMMAND_DEFAULTS: dict[Path, Callable] = {
    DEFAULT_CONFIG: train_cmd.main,
    pretrain_mod.PRETRAIN_CONFIG: pretrain_mod.main,
    from_reference_cmd.CONFIG: from_reference_cmd.main,
}
#: Sections of configs/default.yaml read by another command than train.py.
SECTION_COMMANDS: dict[str, Callable] = {
    "eval": evaluate_cmd.main,
    "synthetic_shards": synthetic_shards_cmd.main,
    "pair_shards": pair_shards_cmd.main,
    "cache_features": cache_features_cmd.main,
    "miniature_benchmarks": miniature_cmd.main,
    "format_transfer": format_transfer_cmd.main,
    "export_head": export_head_cmd.main,
    "controlled": controlled_cmd.main,
}


def rules() -> dict[str, Rule]:
    return {**schema(), **train_schema()}


def leaves(d: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted key -> value of every leaf (a list is a leaf)."""
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def command_default(path: Path) -> Path:
    """The defaults a shipped config is merged onto: itself for a command's own defaults, else
    configs/default.yaml (train.py / evaluate.py / data_prep read the others)."""
    if path in COMMAND_DEFAULTS:
        return path
    if path.stem.startswith("pretrain_"):  # the controlled pretraining variants (issue 27)
        return pretrain_mod.PRETRAIN_CONFIG
    return DEFAULT_CONFIG


def shipped_config(path: Path) -> dict:
    return to_plain(parse_cli(["--config", str(path)], default=command_default(path)))


SHIPPED = sorted(CONFIG_DIR.glob("*.yaml"))


def test_every_command_default_is_shipped() -> None:
    assert set(COMMAND_DEFAULTS) <= set(SHIPPED) and len(SHIPPED) >= 6


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_leaf_of_every_shipped_config_has_a_rule(path: Path) -> None:
    cfg = shipped_config(path)
    keys = dict(leaves(cfg))
    table = rules()
    missing = sorted(k for k in keys if k not in table)
    assert not missing, f"{path.name}: no rule in dcsm/config_schema.py for {missing}"
    bad = {k: v for k, v in keys.items() if violation(table[k], v)}
    assert not bad, f"{path.name}: shipped values break their rules: {bad}"
    check_values(check_config(cfg), train_schema())  # what the commands run, normalised lists included


def _typo(rule: Rule, value: Any) -> tuple[str, str]:
    """(override value, what the error shows of it) for a typo of ``value`` under ``rule``."""
    names = [c for c in rule.choices if isinstance(c, str)] or [str(c) for c in rule.choices]
    if rule.kind == CHOICE_LIST:
        word = f"{value[0] if value else names[0]}x"
        return f"[{word}]", repr([word])
    word = f"{value if isinstance(value, str) else names[0]}x"
    return word, repr(word)


def named_keys() -> list[tuple[Path, str, Any]]:
    """(command defaults, key, shipped value) of every key whose rule holds names."""
    table, out = rules(), []
    for default in COMMAND_DEFAULTS:
        for key, value in leaves(shipped_config(default)):
            if key in table and table[key].kind in NAMED_KINDS:
                out.append((default, key, value))
    return out


NAMED = named_keys()


def test_named_keys_cover_every_kind() -> None:
    kinds = {rules()[key].kind for _, key, _ in NAMED}
    assert kinds == {CHOICE, CHOICE_LIST, NAME_OR_LIST, NAME_OR_FILE, DEVICE}
    keys = {key for _, key, _ in NAMED}  # the keys issue 23 names, and the ones this table added
    assert {"maps.standardize", "scorer.layout", "scorer.pooled", "encoder.pad_rows", "loss.kind", "logger.kind",
            "data.source", "eval.prompt_style", "functional_rows.lexicon", "resume", "cache_features.device",
            "synthetic_shards.style", "dashboard.split", "diagnostics.center_bias.colours", "diagnostics.text_bank",
            "reference_data.sources"} <= keys


class Built(AssertionError):
    """The command built a model before failing."""


@pytest.fixture()
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003
        raise Built("a model was built before the config was checked")

    for mod in (train_fit, evaluate_cmd, cache_features_cmd):
        monkeypatch.setattr(mod, "FrozenCLIP", refuse)
    monkeypatch.setattr(pretrain_mod, "ContrastiveCLIP", refuse)
    for name in ("create_model", "create_model_and_transforms", "create_model_from_pretrained"):
        monkeypatch.setattr(open_clip, name, refuse)


@pytest.mark.parametrize(("default", "key", "value"), NAMED, ids=[f"{d.stem}:{k}" for d, k, _ in NAMED])
def test_a_typo_in_a_named_key_is_one_line_before_anything_is_built(
        default: Path, key: str, value: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture, no_build: None) -> None:
    rule = rules()[key]
    main = COMMAND_DEFAULTS[default]
    if default == DEFAULT_CONFIG:
        main = SECTION_COMMANDS.get(key.split(".")[0], main)
    monkeypatch.chdir(tmp_path)
    override, shown = _typo(rule, value)
    argv = [f"{key}={override}"]
    if default == DEFAULT_CONFIG:
        argv.append(f"run_dir={tmp_path / 'run'}")

    def too_slow(*_):  # noqa: ANN002
        raise TimeoutError(f"{key}={override} ran past {TYPO_SECONDS} s")

    old = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(TYPO_SECONDS)
    start = time.perf_counter()
    try:
        with pytest.raises(SystemExit) as exc:
            run_command(main, argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    elapsed = time.perf_counter() - start
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    line = err[0]
    assert f"{key}={shown}" in line and f"Fix: {key}=" in line, line
    for choice in rule.choices:  # every allowed value is named
        assert show(choice) in line.split("Fix:", 1)[1], (choice, line)
    assert elapsed < TYPO_SECONDS
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("key", "good", "bad"), [
    ("trainer.max_steps", [-1, 1, 500], [0, -2, 1.5, None, "10"]),
    ("functional_rows.lexicon", ["default", ["not", "left of"]], ["defaultx", [], [""], [1], None]),
    ("cache_features.device", ["auto", "cpu", "cuda", "cuda:1", "mps"], ["gpu", "cuda:", "cuda:x", "autox", 0, None]),
    ("data.train_shards", [None, "shards/train", ["a.tar", "b.tar"]], ["", [], [""], 3]),
    ("diagnostics.center_bias.background", [[0, 0, 0], [255, 1, 2]], [[0, 0], [0, 0, 256], [0.5, 0, 0], "red"]),
    ("diagnostics.pruning.ks", [[1, 2], [100]], [[], [0], [1.0], 4]),
    ("diagnostics.center_bias.mitigations.prompt_strengths", [[0.0, 0.5, 1], [1]], [[], [1.5], [-0.1], [float("nan")]]),
    ("optim.betas", [[0.9, 0.98], [0, 0.5]], [[0.9], [0.9, 1.0], [0.9, 0.98, 0.99]]),
    ("reference_data.phrasings", [[0], [0, 1]], [[], [2], ["0"], [True]]),
    ("synthetic_shards.num_options", [2, 4], [1, 5]),
    ("dashboard.split", [None, "val", "heldout"], ["vall", ["val"]]),
])
def test_rule_kinds_accept_and_refuse(key: str, good: list, bad: list) -> None:
    rule = rules()[key]
    assert [v for v in good if violation(rule, v)] == []
    assert [v for v in bad if not violation(rule, v)] == []


def test_resume_and_text_files_take_a_name_or_an_existing_file(tmp_path: Path) -> None:
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"x")
    table = rules()
    assert not any(violation(table["resume"], v) for v in ("auto", None, False))  # false: as dcsm.train.fit reads it
    assert not violation(table["resume"], str(ckpt))
    assert violation(table["resume"], "autox") and violation(table["resume"], str(tmp_path))
    assert not violation(table["diagnostics.text_bank"], "default") and not violation(table["diagnostics.text_bank"], str(ckpt))
    assert violation(table["diagnostics.text_bank"], str(tmp_path / "missing.txt"))


def test_error_line_names_key_value_and_allowed_values() -> None:
    from dcsm.config import ConfigError

    cases = {
        "trainer.max_steps": (0, "trainer.max_steps=0 must be >= 1. Fix: trainer.max_steps=<integer >= 1> or -1."),
        "cache_features.device": ("gpu", "cache_features.device='gpu' is not allowed. "
                                         "Fix: cache_features.device=auto|cpu|cuda|mps|cuda:<index>."),
        "diagnostics.center_bias.background": ([1, 2], "diagnostics.center_bias.background=[1, 2] is not allowed. "
                                                       "Fix: diagnostics.center_bias.background=[3 integers >= 0 and <= 255]."),
        "functional_rows.lexicon": ("defualt", "functional_rows.lexicon='defualt' is not allowed. "
                                               "Fix: functional_rows.lexicon=default or [a non-empty list of texts]."),
    }
    for key, (value, message) in cases.items():
        section, _, leaf = key.rpartition(".")
        cfg: dict = {}
        node = cfg
        for part in section.split("."):
            node = node.setdefault(part, {})
        node[leaf] = value
        with pytest.raises(ConfigError) as info:
            check_values(cfg, {key: rules()[key]})
        assert str(info.value) == message
