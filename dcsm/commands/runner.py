"""The one command-line runner behind ``train.py``, ``evaluate.py`` and ``data_prep/*``.

Every command takes ``[--config FILE] [key=value ...]`` (defaults: ``configs/default.yaml``;
every knob has its one home there). A command is ``main(argv) -> result``: it reads its
config with :func:`command_config` and raises on bad input; :func:`run_command` runs it from a
script, printing user errors as one line and exiting with status 2 (``DCSM_DEBUG=1``: traceback).
"""

from __future__ import annotations

import logging
import os
import sys
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import CONFIG_DIR, DEFAULT_CONFIG, parse_cli, to_plain
from ..config_checks import check_config
from ..io import disk_full_error, disk_full_path, is_disk_full


#: Commands whose defaults are another file than configs/default.yaml (known before they are imported).
OWN_DEFAULTS = {"dcsm.commands.pretrain_toy_clip": CONFIG_DIR / "pretrain_toy_clip.yaml",
                "dcsm.commands.from_reference": CONFIG_DIR / "from_reference.yaml"}
USER_ERRORS = (ValueError, FileNotFoundError, KeyError)  # ours carry the file/field and the fix
USAGE_EXIT = 2


def command_config(argv: Sequence[str] | None = None, default: Path = DEFAULT_CONFIG) -> dict:
    """``[--config FILE] [key=value ...]`` (``sys.argv`` when None) over ``default`` (the
    command's defaults, holding every key) -> resolved plain config dict, checked before anything
    is built (:func:`dcsm.config_checks.check_config`: single strings under list keys become
    lists, every key's type/choice/range)."""
    return check_config(to_plain(parse_cli(argv, default=default)))


HELP_FLAGS = ("-h", "--help")


def usage(main: Callable[..., Any]) -> str:
    """The help text of a command: its module's docstring and the config convention."""
    doc = (sys.modules[main.__module__].__doc__ or main.__doc__ or "").strip()
    return (f"{doc}\n\nusage: [--config FILE|NAME] [key=value ...]\n"
            f"  defaults and every key: {DEFAULT_CONFIG} (shipped configs: {', '.join(sorted(p.stem for p in CONFIG_DIR.glob('*.yaml')))})\n"
            "  bad input prints one 'error: ...' line and exits 2 (DCSM_DEBUG=1: traceback)")


def one_line(err: BaseException) -> str:
    """An error's message on one line. A DataLoader worker re-raises with "Caught X in
    DataLoader worker process N." and the worker's traceback; the message is its last line."""
    text = str(err)
    if "Original Traceback" in text:
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def run_command(main: Callable[[Sequence[str] | None], Any] | str, argv: Sequence[str] | None = None) -> Any:
    """Run a command's ``main`` (or the ``main`` of the module named, e.g. ``"dcsm.commands.evaluate"``:
    its config is checked before the module is imported, so a typo fails without the seconds that
    torch and open_clip take); ``--help`` prints its usage; user errors, and a full disk anywhere
    (:mod:`dcsm.io`), print ``error: ...`` on one line and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in HELP_FLAGS for a in args):
        print(usage(import_module(main).main if isinstance(main, str) else main))
        sys.exit(0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if isinstance(main, str):
            command_config(argv, OWN_DEFAULTS.get(main, DEFAULT_CONFIG))  # raises on a bad key or value
            main = import_module(main).main
        return main(argv)
    except USER_ERRORS as err:
        if os.environ.get("DCSM_DEBUG"):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    except (OSError, RuntimeError) as err:  # a full disk outside dcsm.io.atomic_write (images, W&B files)
        if os.environ.get("DCSM_DEBUG") or not is_disk_full(err):
            raise
        print(f"error: {one_line(disk_full_error(disk_full_path(err), err))}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
