"""Exceptions raised while reading, extracting or strictly loading checkpoints.

Every failure is a `CheckpointError`, so a caller can report any checkpoint problem in one place
and still tell the kinds apart.
"""

from __future__ import annotations

from pathlib import Path


class CheckpointError(Exception):
    """Base class: something is wrong with a checkpoint file or its contents."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"checkpoint not found: {path}")
        self.path = path


class CorruptCheckpointError(CheckpointError):
    """Truncated, not a torch zip / safetensors file, or a pickle the safe reader cannot parse."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle references globals outside the allowlist; nothing in it was executed."""

    def __init__(self, path: Path, globals_found: tuple[str, ...]) -> None:
        names = ", ".join(globals_found)
        super().__init__(
            f"refusing to load {path}: its pickle references globals that are not allowlisted "
            f"({names}); nothing from the file was executed"
        )
        self.path = path
        self.globals_found = globals_found


class CheckpointLayoutError(CheckpointError):
    """The file loaded, but its top-level structure or key layout is not the expected one."""


class StateDictMismatchError(CheckpointError):
    """A state dict does not fit a module: every missing, unexpected and mis-shaped key at once."""

    def __init__(
        self,
        module_name: str,
        *,
        missing: tuple[str, ...],
        unexpected: tuple[str, ...],
        mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...],
    ) -> None:
        lines = [
            f"state dict does not fit {module_name}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(mismatched)} mis-shaped"
        ]
        if missing:
            lines.append("  missing: " + ", ".join(missing))
        if unexpected:
            lines.append("  unexpected: " + ", ".join(unexpected))
        for key, file_shape, module_shape in mismatched:
            lines.append(f"  mis-shaped: {key} (file {file_shape}, module {module_shape})")
        super().__init__("\n".join(lines))
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
