"""Checks on model files: SHA-256 (cancellable), git blob ids, and a cheap structure check that
catches truncated files and saved HTML pages (runs on the caller's thread).
"""

from __future__ import annotations

import hashlib
import json
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from runtime.model.store.errors import Cancelled

HASH_CHUNK = 8 << 20
"""Bytes read at a time when hashing or copying model files (cancel is checked between)."""


def sha256_file(
    path: Path,
    *,
    cancel: threading.Event | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            h.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    return h.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file: what the hub reports as ETag for non-LFS files."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def structure_problem(path: Path, kind: Literal["checkpoint", "json"]) -> str | None:
    """A cheap format check that catches truncated files and saved HTML error pages."""
    try:
        if kind == "json":
            try:
                value = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                return f"not a JSON file ({exc})"
            return None if isinstance(value, dict) else "not a JSON object"
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            try:
                with zipfile.ZipFile(path) as zf:
                    names = zf.namelist()
            except (zipfile.BadZipFile, OSError) as exc:
                return f"damaged PyTorch archive ({exc})"
            if not any(n.endswith("data.pkl") for n in names):
                return "a zip archive but not a PyTorch checkpoint"
            return None
        # torch.save's legacy format starts with a protocol-2 pickle.
        if head[:1] == b"\x80":
            return None
        return "not a PyTorch checkpoint"
    except OSError as exc:
        return f"unreadable ({exc})"
