"""Read a checkpoint file without ever executing code from it.

Formats, told apart by their first bytes (not by the file name):
- torch zip checkpoints (`torch.save`, also Lightning `.ckpt` and HF `pytorch_model.bin`): the
  pickle's globals are listed statically first (`get_unsafe_globals_in_checkpoint`, which only
  disassembles the pickle), anything outside the allowlist is refused by name, and only then is
  the file loaded with `torch.load(weights_only=True)` under the same allowlist;
- safetensors (a flat name -> tensor table; no code by construction).
Legacy pre-zip torch files are refused: none of the published files use that format.

The allowlist is torch's own weights-only set (tensors, storages, dtypes, OrderedDict, ...) plus
`INERT_GLOBALS`: the non-tensor containers a Lightning checkpoint carries around the weights
(hyper-parameters), mapped to inert stand-ins so the real library is never imported. There is
no fallback to full unpickling.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from models.checkpoint.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
)


class InertNamespace:
    """Stand-in for `argparse.Namespace`: unpickling only fills `__dict__` with plain data."""

    def __repr__(self) -> str:
        return f"InertNamespace({vars(self)!r})"


# Lightning's AttributeDict is a plain dict subclass holding hyper-parameters. It maps to `dict`
# itself because the weights-only unpickler only accepts SETITEMS into exact dict types; a dict
# subclass stand-in would be rejected there.
INERT_GLOBALS: Mapping[str, type] = {
    "pytorch_lightning.utilities.parsing.AttributeDict": dict,
    "lightning_fabric.utilities.data.AttributeDict": dict,
    "lightning.fabric.utilities.data.AttributeDict": dict,
    "lightning.pytorch.utilities.parsing.AttributeDict": dict,
    "argparse.Namespace": InertNamespace,
}

_ZIP_MAGIC = b"PK\x03\x04"
# A legacy torch file starts with the pickled MAGIC_NUMBER (protocol 2, without the STOP opcode).
_LEGACY_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)[:-1]


def _allowlist() -> list[Callable[..., Any] | tuple[Callable[..., Any], str]]:
    return [(stand_in, name) for name, stand_in in INERT_GLOBALS.items()]


def _sniff(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(_ZIP_MAGIC):
        return "torch-zip"
    if head.startswith(_LEGACY_MAGIC):
        return "torch-legacy"
    # safetensors: u64 little-endian header length, then a JSON object.
    if len(head) > 8 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 8 + header_len <= path.stat().st_size:
            return "safetensors"
    return "unknown"


def _read_torch_zip(path: Path) -> object:
    with torch.serialization.safe_globals(_allowlist()):
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as exc:  # zip and pickle damage surface as many exception types
            msg = f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})"
            raise CorruptCheckpointError(msg) from exc
        if unsafe:
            raise UnsafeCheckpointError(path, tuple(sorted(unsafe)))
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            msg = f"{path}: the weights-only unpickler refused its contents ({exc})"
            raise CorruptCheckpointError(msg) from exc
        except Exception as exc:
            msg = f"{path}: truncated or corrupt checkpoint ({type(exc).__name__}: {exc})"
            raise CorruptCheckpointError(msg) from exc


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (safetensors.SafetensorError, ValueError, OSError) as exc:
        raise CorruptCheckpointError(f"{path}: truncated or corrupt safetensors ({exc})") from exc


def read_checkpoint(path: Path) -> object:
    """The object stored in `path` (usually a dict), read without executing anything from it."""
    if not path.is_file():
        raise CheckpointNotFoundError(path)
    kind = _sniff(path)
    if kind == "torch-zip":
        return _read_torch_zip(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "torch-legacy":
        raise CorruptCheckpointError(
            f"{path}: legacy (pre-zip) torch format is not supported; re-save it or use safetensors"
        )
    raise CorruptCheckpointError(
        f"{path}: neither a torch zip checkpoint nor safetensors "
        "(empty, truncated or another format)"
    )
