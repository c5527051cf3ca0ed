"""Config loading: ``configs/*.yaml`` (omegaconf) + ``key=value`` command-line overrides.

A config file may name ``base: other.yaml`` (relative to itself); it is loaded first and the
file's keys are merged on top. A config file and the overrides may only set keys that the
command's defaults (``configs/default.yaml``) have: a typo fails the same way wherever it is.
Every problem is a :class:`ConfigError` naming the file or override and the fix: a missing file
(a path is a path; only a bare shipped name such as ``smoke`` finds a shipped config), a folder,
a ``base:`` cycle or missing base, a YAML error, a file that is not a mapping, YAML anchors or
aliases in an override value (alias bombs).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

def _config_dir() -> Path:
    """``configs/`` of a source checkout, else the copy a wheel carries as ``dcsm/configs``."""
    checkout = Path(__file__).resolve().parents[1] / "configs"
    return checkout if (checkout / "default.yaml").is_file() else Path(__file__).resolve().parent / "configs"


CONFIG_DIR = _config_dir()
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
BASE_KEY = "base"


class ConfigError(ValueError):
    """Bad config file or override."""


def _yaml_problem(err: yaml.YAMLError) -> tuple[str, str]:
    """(`` line L, column C`` or "", the problem) of a YAML error."""
    mark = getattr(err, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return where, problem


def load_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> DictConfig:
    """Load a yaml file, resolving its ``base:`` chain (relative to the file; a cycle or a
    missing base is a :class:`ConfigError`)."""
    path = resolve_config_path(path) if not _chain else path
    if path.resolve() in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"config file '{path}': base: chain is a cycle ({cycle}). Fix: remove one of the base: keys.")
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)  # the shape, nothing expanded
        if root is not None and not isinstance(root, yaml.MappingNode):
            kind = "list" if isinstance(root, yaml.SequenceNode) else "single value"
            raise ConfigError(f"config file '{path}' holds a {kind}, not a mapping of keys. "
                              "Fix: write 'section:' / 'key: value' lines (see configs/default.yaml).")
        cfg = OmegaConf.load(path)
    except ConfigError:
        raise
    except yaml.YAMLError as err:  # one line naming the file, line and column
        where, problem = _yaml_problem(err)
        raise ConfigError(f"config file '{path}'{where}: YAML syntax error: {problem}. Fix: correct the YAML there.") from None
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        raise ConfigError(f"config file '{path}' is not a mapping of keys ({' '.join(str(err).split())[:120]}). "
                          "Fix: write 'section:' / 'key: value' lines (see configs/default.yaml).") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file '{path}' cannot be read ({getattr(err, 'strerror', None) or err}). Fix: pass a readable YAML file.") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"config file '{path}' holds a {type(cfg).__name__.replace('Config', '').lower()}, not a mapping "
                          "of keys. Fix: write 'section:' / 'key: value' lines (see configs/default.yaml).")
    base = cfg.pop(BASE_KEY, None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"config file '{path}': base: {base!r} must be a file name. Fix: base: default.yaml.")
        base_path = path.parent / base
        if not base_path.is_file():
            base_path = _shipped(base) if _is_bare(base) else None  # a bare name may be a shipped config
            if base_path is None:
                raise ConfigError(f"config file '{path}': base: '{base}' does not exist (looked for '{path.parent / base}'). "
                                  "Fix: name an existing file, relative to this one.")
        cfg = OmegaConf.merge(load_yaml(base_path, (*_chain, path.resolve())), cfg)
    return cfg


SHIPPED_FOLDER = "configs"  # ``configs/NAME.yaml``: the spelling the README uses, found after pip install too


def _is_bare(name: str | Path) -> bool:
    """A bare shipped-config name: ``smoke``, ``smoke.yaml``, or ``configs/smoke.yaml``."""
    parts = Path(name).parts
    return len(parts) == 1 or (len(parts) == 2 and parts[0] == SHIPPED_FOLDER)


def _shipped(name: str | Path) -> Path | None:
    path = Path(name)
    shipped = CONFIG_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    return shipped if shipped.is_file() else None


def resolve_config_path(path: str | Path) -> Path:
    """A config path as given; when no such file exists, a bare name (``smoke``, ``smoke.yaml``,
    ``configs/smoke.yaml``) is the shipped config of that name (from any directory, also after
    ``pip install``). Any other path must exist: a path is never swapped for a shipped file."""
    path = Path(path)
    if path.is_file():
        return path
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    if path.exists():
        raise ConfigError(f"config file '{path}' is a folder, not a file. Fix: pass --config PATH.yaml or a shipped config name {names}.")
    shipped = _shipped(path) if _is_bare(path) else None
    if shipped is not None:
        return shipped
    raise ConfigError(f"config file '{path}' does not exist. Fix: pass --config PATH.yaml or a shipped config name {names}.")


class _NoAliasLoader(yaml.SafeLoader):
    """Refuses YAML anchors and aliases (an alias bomb expands exponentially)."""

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            raise yaml.YAMLError("YAML anchors and aliases (&x / *x) are not allowed in an override value")
        return super().compose_node(parent, index)


def _check_override_value(override: str) -> None:
    key, value = override.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override '{override}' has no key. Fix: key=value (e.g. trainer.max_epochs=3).")
    try:
        yaml.compose(value, Loader=_NoAliasLoader)
    except yaml.YAMLError as err:
        where, problem = _yaml_problem(err)
        raise ConfigError(f"override '{override}': {key} is not valid YAML ({problem}). "
                          f"Fix: quote the value ({key}='...') or correct it.") from None


def merge_known(cfg: DictConfig, extra: DictConfig, source: str, against: str = "configs/default.yaml") -> DictConfig:
    """``extra`` merged onto ``cfg``; a key ``cfg`` does not have raises :class:`ConfigError`
    naming ``source`` (a config file or the overrides), the key and ``against`` (the defaults file)."""
    OmegaConf.set_struct(cfg, True)
    try:
        merged = OmegaConf.merge(cfg, extra)
    except (ConfigAttributeError, ConfigKeyError) as err:
        key = getattr(err, "full_key", None) or err.msg.splitlines()[0]
        raise ConfigError(f"unknown config key '{key}' in {source}. "
                          f"Fix: check the spelling against {against}.") from None
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        raise ConfigError(f"config key '{key}' in {source}: {' '.join(str(err).split())[:160]}. "
                          f"Fix: give it a value of the kind {against} has.") from None
    finally:
        OmegaConf.set_struct(cfg, False)
    OmegaConf.set_struct(merged, False)
    return merged


def apply_overrides(cfg: DictConfig, overrides: Sequence[str], against: str = "configs/default.yaml") -> DictConfig:
    """Merge ``key=value`` overrides; unknown keys raise :class:`ConfigError`."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"override '{bad[0]}' is not of the form key=value (e.g. trainer.max_epochs=3).")
    for o in overrides:
        _check_override_value(o)
    try:
        extra = OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"overrides {list(overrides)}: {' '.join(str(err).split())[:160]}. "
                          "Fix: key=value with a dotted key (e.g. trainer.max_epochs=3).") from None
    return merge_known(cfg, extra, f"overrides {list(overrides)}", against)


def to_plain(cfg: DictConfig | dict) -> dict:
    """A resolved plain-dict copy of a config."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def _shown(path: Path) -> str:
    """A defaults file as users know it: ``configs/default.yaml`` for a shipped one."""
    return f"{SHIPPED_FOLDER}/{path.name}" if path.resolve().parent == CONFIG_DIR.resolve() else str(path)


def parse_cli(argv: Sequence[str] | None = None, default: Path = DEFAULT_CONFIG) -> DictConfig:
    """``[--config FILE] [key=value ...]`` -> resolved config: ``FILE`` (and its ``base:`` chain)
    merged onto ``default``, the command's defaults, which hold every key there is."""
    args = list(sys.argv[1:] if argv is None else argv)
    path: str | Path = default
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise ConfigError("--config needs a file path.")
        path = args[i + 1]
        del args[i : i + 2]
    defaults = load_yaml(default)
    chosen = resolve_config_path(path)
    against = _shown(Path(default))
    cfg = defaults if chosen.resolve() == Path(default).resolve() else merge_known(
        defaults, load_yaml(chosen), f"config file '{chosen}'", against)
    cfg = apply_overrides(cfg, args, against)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"config interpolation: {' '.join(str(err).split())[:200]}. Fix: correct the ${{...}} reference.") from None
    return cfg
