"""Reading checkpoint files without running code from them.

Two formats are read, and nothing else is unpickled:

- **dcsm checkpoints** (Lightning ``.ckpt`` written by ``train.py``): ``torch.load(weights_only=True)``
  — tensors, plain containers (dict, list, tuple, set), strings and numbers only.
- **The authors' DCSM_Ideal_CLIP pickles** (``torch.save`` of a dict holding a pickled
  ``nn.Embedding`` and a Hugging Face tokenizer): a restricted unpickler that admits only tensor
  and storage rebuilders, ``OrderedDict``, ``set``, ``nn.Embedding`` and ``nn.Parameter``. Objects
  of the tokenizer world (``transformers``, ``tokenizers`` and the regex modules their state
  holds) become inert stand-ins: their constructor is never called, their state is only stored.
  Any other class or function is refused with its name; the file's code never runs.

Every failure is a :class:`CheckpointError` (a ``ValueError``) whose one-line message names the
file and the fix, so the command lines print it and exit 2.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Real objects the authors' pickles may rebuild: tensors/parameters (storages are handled by
# torch.load itself), and the containers and the nn.Embedding of their functional rows.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.nn.modules.sparse", "Embedding"): nn.Embedding,
    ("torch.nn.parameter", "Parameter"): nn.Parameter,
    ("torch", "Size"): torch.Size,
}
# Packages whose pickled objects we never need (the pickled tokenizer): stood in for, never called.
STUBBED_PACKAGES = ("transformers", "tokenizers", "regex", "_regex", "re")


class CheckpointError(ValueError):
    """A checkpoint file cannot be read; the message names the file and the fix."""


class UnsafeCheckpointError(CheckpointError):
    """The file asks to rebuild a class or call a function outside the allow-list."""


class _Refused(pickle.UnpicklingError):
    def __init__(self, qualname: str) -> None:
        super().__init__(qualname)
        self.qualname = qualname


class InertStub:
    """Stands in for a pickled object of a stubbed package: stores what it was given, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # torch.save writes protocol 2, where Python 3 names appear in their Python 2 spelling
        # (__builtin__.set); map them back the way pickle's own find_class does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]
        if module.split(".")[0] in STUBBED_PACKAGES:
            return InertStub
        raise _Refused(f"{module}.{name}")


restricted_pickle = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler, load=pickle.load, __name__="dcsm_restricted_pickle"
)


def _fix_for(path: Path) -> str:
    if path.name == "last.ckpt":
        return (f"Fix: delete or move '{path}' and start fresh with resume=null (or resume=<another checkpoint>); "
                "the run's best-*.ckpt may still be intact.")
    return "Fix: give a .ckpt written by train.py or an authors' DCSM_Ideal_CLIP .pt file (re-download or re-train it)."


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Unpickle a dcsm or authors' checkpoint without running code from it.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file needs a class/function outside the allow-list (named).
        CheckpointError: the file is truncated, empty, or not a torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist. {_fix_for(path)}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes). {_fix_for(path)}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # noqa: BLE001 - not a plain-weights file: try the authors' format next
        pass
    try:
        return torch.load(path, map_location=map_location, weights_only=False, pickle_module=restricted_pickle)
    except _Refused as err:
        raise UnsafeCheckpointError(
            f"checkpoint '{path}' refused: it asks to load '{err.qualname}', which dcsm never unpickles "
            "(only tensors, plain containers, nn.Embedding/Parameter and stand-ins for tokenizer objects). "
            "Fix: load only checkpoints written by train.py or the authors' released files."
        ) from None
    except Exception as err:  # noqa: BLE001 - truncated zip, garbage bytes, a text file named .ckpt
        raise CheckpointError(
            f"checkpoint '{path}' is unreadable ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else 'no detail'}). "
            f"{_fix_for(path)}"
        ) from None
