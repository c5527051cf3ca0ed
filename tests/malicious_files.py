"""Hostile checkpoint files for the no-code-runs tests. Each payload, if it ever ran, would print
``PAYLOAD RAN`` and create a marker file (nothing else: the tests stay harmless); the tests
assert that neither happens. :func:`payload_fires` proves each one is live when loaded the
unsafe way (plain pickle, ``torch.load(weights_only=False)``, ``torch.jit.load``).
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import tarfile
from pathlib import Path
from typing import Callable

import torch

PRINTED = "PAYLOAD RAN"
#: torch's legacy-format magic number (torch/serialization.py MAGIC_NUMBER): its first pickle.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _expression(marker: Path, value: str = "0") -> str:
    """A Python expression that prints, creates ``marker`` and evaluates to ``value``."""
    return f"print({PRINTED!r}) or open({str(marker)!r}, 'w').close() or {value}"


class SystemCall:
    """Pickles as ``os.system`` (``posix.system``): echo + touch the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"echo {PRINTED}; touch '{self.marker}'",))


class Eval:
    """Pickles as ``builtins.eval`` of an expression that prints, touches the marker, returns ``value``."""

    def __init__(self, marker: Path, value: str = "0") -> None:
        self.marker, self.value = marker, value

    def __reduce__(self):  # noqa: ANN204
        return (builtins.eval, (_expression(self.marker, self.value),))


class ScriptedPayload(torch.nn.Module):
    """A TorchScript module whose ``__setstate__`` (run by ``torch.jit.load``) prints and creates
    the marker (``torch.from_file(shared=True)`` creates the file it maps)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.register_buffer("w", torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        print("PAYLOAD RAN")
        self.w = torch.from_file(state[0], True, 2, dtype=torch.float32) * 0 + 1


def raw_pickle_system(path: Path, marker: Path, real: Path | None = None) -> None:
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": {}, "hyper_parameters": {"cfg": SystemCall(marker)}}, fh, protocol=2)


def raw_pickle_eval(path: Path, marker: Path, real: Path | None = None) -> None:
    with open(path, "wb") as fh:
        pickle.dump(Eval(marker), fh, protocol=4)


def legacy_stealth(path: Path, marker: Path, real: Path | None = None) -> None:
    """A real checkpoint (``real``) re-saved in torch's legacy format, its first pickle (the magic
    number) replaced by ``eval("<payload> or <magic>")``: unsafe loaders run it and load normally."""
    obj = torch.load(real, weights_only=True) if real is not None else {"state_dict": {"w": torch.ones(2)}}
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    first = io.BytesIO(data)
    assert pickle.Unpickler(first).load() == LEGACY_MAGIC  # our own file: its first pickle is the int
    path.write_bytes(pickle.dumps(Eval(marker, hex(LEGACY_MAGIC)), protocol=2) + data[first.tell():])


def tar_storages(path: Path, marker: Path, real: Path | None = None) -> None:
    """torch's old tar format: its ``storages`` member is read with a plain ``pickle.load``."""
    with tarfile.open(path, "w") as tar:
        for name, payload in (("sys_info", {"protocol_version": 1001, "little_endian": True}),
                              ("storages", SystemCall(marker)), ("tensors", 0), ("pickle", {})):
            blob = pickle.dumps(payload, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def torchscript(path: Path, marker: Path, real: Path | None = None) -> None:
    torch.jit.save(torch.jit.script(ScriptedPayload(str(marker))), str(path))


def zip_system(path: Path, marker: Path, real: Path | None = None) -> None:
    """A zip checkpoint (plain torch.save layout) whose data.pkl calls ``posix.system``."""
    torch.save({"state_dict": {"head.w": torch.ones(2)}, "hyper_parameters": {"cfg": {"x": SystemCall(marker)}}}, path)


def zip_eval(path: Path, marker: Path, real: Path | None = None) -> None:
    """A real checkpoint's dict with ``builtins.eval`` hidden in its config (zip layout)."""
    obj = torch.load(real, weights_only=True) if real is not None else {"state_dict": {}, "hyper_parameters": {"cfg": {}}}
    obj["hyper_parameters"]["cfg"]["seed"] = Eval(marker, "0")
    torch.save(obj, path)


PAYLOADS: dict[str, Callable[..., None]] = {
    "raw_pickle_system": raw_pickle_system,
    "raw_pickle_eval": raw_pickle_eval,
    "legacy_stealth": legacy_stealth,
    "tar_storages": tar_storages,
    "torchscript": torchscript,
    "zip_system": zip_system,
    "zip_eval": zip_eval,
}


def payload_fires(kind: str, path: Path) -> None:
    """Load ``path`` the unsafe way its kind is dangerous to (used only to prove a payload is live)."""
    if kind.startswith("raw_pickle"):
        with open(path, "rb") as fh:
            pickle.load(fh)  # noqa: S301 - proving the payload is live, in a temp folder
    elif kind == "torchscript":
        torch.jit.load(str(path))
    else:
        try:
            torch.load(path, weights_only=False)  # noqa: S614 - proving the payload is live, in a temp folder
        except Exception:  # noqa: BLE001 - the payload has run by the time loading fails
            pass
