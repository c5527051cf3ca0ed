"""Reading checkpoint files without running code from them.

Before a byte of pickle is read, :func:`check_torch_zip` opens the file as a zip archive and
accepts only the layout ``torch.save`` writes (``ARCHIVE/data.pkl``, ``ARCHIVE/data/<n>``
storages and the ``version``, ``byteorder``, ``.format_version``, ``.storage_alignment``,
``.data/serialization_id`` records). Everything else is refused with one line naming the file,
what it is and how to convert a file the user trusts: torch's legacy (non-zip) format and raw
pickles (torch reads their headers with a plain ``pickle.load``), the tar format, TorchScript
archives (``code/``, ``constants.pkl``: ``torch.load`` would hand them to ``torch.jit.load``)
and any other zip. Then two formats are unpickled, and nothing else:

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
import io
import pickle
import re
import types
import zipfile
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


def _no_plain_load(*args: Any, **kwargs: Any) -> Any:
    """torch's legacy reader calls ``pickle_module.load``; never reached (:func:`check_torch_zip`), never plain."""
    raise _Refused("a plain pickle.load (torch's legacy non-zip format)")


restricted_pickle = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler, load=_no_plain_load, __name__="dcsm_restricted_pickle"
)

#: Members of a plain ``torch.save`` zip archive, below its one top folder (torch 1.6 - 2.x).
TORCH_SAVE_RECORDS = frozenset({"data.pkl", "version", ".data/version", "byteorder", ".format_version",
                                ".storage_alignment", ".data/serialization_id"})
STORAGE_RECORD = re.compile(r"data/[0-9]+")
#: Members only TorchScript archives (``torch.jit.save``) hold.
TORCHSCRIPT_MARKERS = ("code/", "constants.pkl", "extra/", ".data/ts_code/")
ZIP_MAGIC = b"PK\x03\x04"
TAR_MAGIC_OFFSET, TAR_MAGIC = 257, b"ustar"
PICKLE_PROTO = 0x80


class RefusedFormatError(UnsafeCheckpointError):
    """The file is not a plain ``torch.save`` zip archive (legacy, raw pickle, tar, TorchScript, ...)."""


def _convert_fix(name: str, kind: str) -> str:
    load = f"torch.jit.load('{name}').state_dict()" if kind.startswith("a TorchScript") else f"torch.load('{name}', weights_only=False)"
    return ("dcsm reads only plain torch.save zip archives (train.py's .ckpt, the authors' released .pt files, any torch.save "
            "since torch 1.6). Fix: if you trust the file, load it in a trusted environment and save it again: "
            f"torch.save({load}, 'converted.pt'); never load a file you do not trust.")


def _kind_of_non_zip(head: bytes) -> str | None:
    """What a non-zip file's first bytes say it is, or None when they say nothing."""
    if len(head) >= TAR_MAGIC_OFFSET + len(TAR_MAGIC) and head[TAR_MAGIC_OFFSET:TAR_MAGIC_OFFSET + len(TAR_MAGIC)] == TAR_MAGIC:
        return "a tar archive (torch's old tar format, whose 'storages' member is a plain pickle)"
    if head[:1] == bytes([PICKLE_PROTO]):
        return "a pickle stream (a raw pickle or torch's legacy non-zip format, whose header torch reads with plain pickle)"
    return None


def _layout_problem(names: list[str]) -> str | None:
    """Why a zip archive's member names are not a plain ``torch.save`` layout, or None."""
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or any("/" not in n for n in names):
        return f"a zip archive whose members are not under one folder ({sorted(roots)[:3]})"
    root = roots.pop()
    rel = [n.split("/", 1)[1] for n in names]
    script = next((r for r in rel for m in TORCHSCRIPT_MARKERS if r == m or (m.endswith("/") and r.startswith(m))), None)
    if script is not None:
        return f"a TorchScript archive (member '{root}/{script}'; torch.load would run it through torch.jit.load)"
    odd = next((r for r in rel if r not in TORCH_SAVE_RECORDS and not STORAGE_RECORD.fullmatch(r)), None)
    if odd is not None:
        return f"a zip archive with member '{root}/{odd}', which torch.save does not write"
    if rel.count("data.pkl") != 1:
        return "a zip archive without data.pkl (not written by torch.save)"
    return None


def check_torch_zip(source: str | Path | bytes, name: str | None = None) -> None:
    """Refuse anything but a plain ``torch.save`` zip archive, before a byte of pickle is read.

    Args:
        source: a file path, or the bytes of a file (a feature-shard member).
        name: how messages name it (default: the path).

    Raises:
        RefusedFormatError: legacy/raw pickle, tar, TorchScript or another zip layout (named, with the fix).
        CheckpointError: empty, truncated, or not a torch file at all.
    """
    data = source if isinstance(source, bytes) else None
    label = name if name is not None else str(source) if data is None else "<bytes>"
    if data is not None:
        head = data[: TAR_MAGIC_OFFSET + 8]
    else:
        with open(source, "rb") as fh:
            head = fh.read(TAR_MAGIC_OFFSET + 8)
    if not head:
        raise CheckpointError(f"checkpoint '{label}' is empty (0 bytes). {_fix_for(Path(label))}")
    if head[: len(ZIP_MAGIC)] != ZIP_MAGIC:
        kind = _kind_of_non_zip(head)
        if kind is None:
            raise CheckpointError(f"checkpoint '{label}' is not a torch checkpoint (no zip archive). {_fix_for(Path(label))}")
        raise RefusedFormatError(f"checkpoint '{label}' refused: it is {kind}. {_convert_fix(label, kind)}")
    try:
        with zipfile.ZipFile(io.BytesIO(data) if data is not None else source) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"checkpoint '{label}' is unreadable (a truncated or corrupt zip archive: {err}). "
                              f"{_fix_for(Path(label))}") from None
    problem = _layout_problem(names)
    if problem is not None:
        raise RefusedFormatError(f"checkpoint '{label}' refused: it is {problem}. {_convert_fix(label, problem)}")


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
        RefusedFormatError: not a plain torch.save zip archive (:func:`check_torch_zip`).
        CheckpointError: the file is truncated, empty, or not a torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist. {_fix_for(path)}")
    data = path.read_bytes()  # read once: the bytes checked are the bytes unpickled
    check_torch_zip(data, str(path))  # nothing is unpickled unless the file is a plain torch.save zip archive
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception:  # noqa: BLE001 - not a plain-weights file: try the authors' format next
        pass
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False, pickle_module=restricted_pickle)
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
