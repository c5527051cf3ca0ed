"""Config loading: ``configs/*.yaml`` (omegaconf) + ``key=value`` command-line overrides.

A config file may name ``base: other.yaml`` (relative to itself); it is loaded first and the
file's keys are merged on top. Overrides may only set keys that exist (typos fail loudly).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

def _config_dir() -> Path:
    """``configs/`` of a source checkout, else the copy a wheel carries as ``dcsm/configs``."""
    checkout = Path(__file__).resolve().parents[1] / "configs"
    return checkout if (checkout / "default.yaml").is_file() else Path(__file__).resolve().parent / "configs"


CONFIG_DIR = _config_dir()
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
BASE_KEY = "base"


class ConfigError(ValueError):
    """Bad config file or override."""


def load_yaml(path: str | Path) -> DictConfig:
    """Load a yaml file, resolving its ``base:`` chain."""
    path = resolve_config_path(path)
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as err:  # one line naming the file, line and column
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file '{path}'{where}: YAML syntax error: {problem}. Fix: correct the YAML there.") from None
    base = cfg.pop(BASE_KEY, None)
    if base is not None:
        cfg = OmegaConf.merge(load_yaml(path.parent / base), cfg)
    return cfg


def resolve_config_path(path: str | Path) -> Path:
    """A config path as given, else the shipped config of that name (``smoke``, ``smoke.yaml``,
    ``configs/smoke.yaml`` all work from any directory, also after ``pip install``)."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config file '{path}' does not exist. Fix: pass --config PATH.yaml or a shipped config name {names}.")


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Merge ``key=value`` overrides; unknown keys raise :class:`ConfigError`."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"override '{bad[0]}' is not of the form key=value (e.g. trainer.max_epochs=3).")
    OmegaConf.set_struct(cfg, True)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except (ConfigAttributeError, ConfigKeyError) as err:
        raise ConfigError(f"unknown config key in overrides {list(overrides)}: {err.msg.splitlines()[0]} "
                          "Fix: check the spelling against configs/default.yaml.") from err
    OmegaConf.set_struct(cfg, False)
    return cfg


def to_plain(cfg: DictConfig | dict) -> dict:
    """A resolved plain-dict copy of a config."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def parse_cli(argv: Sequence[str] | None = None, default: Path = DEFAULT_CONFIG) -> DictConfig:
    """``[--config FILE] [key=value ...]`` -> resolved config."""
    args = list(sys.argv[1:] if argv is None else argv)
    path: str | Path = default
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise ConfigError("--config needs a file path.")
        path = args[i + 1]
        del args[i : i + 2]
    cfg = apply_overrides(load_yaml(path), args)
    OmegaConf.resolve(cfg)
    return cfg
