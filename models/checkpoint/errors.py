"""Exceptions raised while reading, extracting or strictly loading checkpoints.

Every failure is a `CheckpointError`, so a caller can report any checkpoint problem in one place
and still tell the kinds apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from runtime.model.versions import ModelVersion, Resemblance

ModelPart = Literal["renderer", "generator"]


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
    """A state dict does not fit a module. str() is one short line (counts and the first
    problem); every missing, unexpected and mis-shaped key is in the attributes and `details`."""

    def __init__(
        self,
        module_name: str,
        *,
        missing: tuple[str, ...],
        unexpected: tuple[str, ...],
        mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...],
    ) -> None:
        summary = (
            f"state dict does not fit {module_name}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(mismatched)} mis-shaped"
        )
        if mismatched:
            key, file_shape, module_shape = mismatched[0]
            summary += f" (first: {key} is {file_shape} in the file, {module_shape} in the model)"
        elif missing:
            summary += f" (first missing: {missing[0]})"
        elif unexpected:
            summary += f" (first unexpected: {unexpected[0]})"
        super().__init__(summary)
        self.module_name = module_name
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched

    @property
    def details(self) -> str:
        """Every problem, one per line (for a debug log, not for a dialog)."""
        lines = [str(self)]
        if self.missing:
            lines.append("  missing: " + ", ".join(self.missing))
        if self.unexpected:
            lines.append("  unexpected: " + ", ".join(self.unexpected))
        for key, file_shape, module_shape in self.mismatched:
            lines.append(f"  mis-shaped: {key} (file {file_shape}, module {module_shape})")
        return "\n".join(lines)


class ModelVersionError(CheckpointError):
    """The checkpoints are not one known IMTalker model version."""


class ModelVersionMismatchError(ModelVersionError):
    """The renderer and the generator checkpoints come from different model versions."""

    def __init__(self, *, renderer: ModelVersion, generator: ModelVersion) -> None:
        super().__init__(
            f"The renderer checkpoint is IMTalker {renderer.name} but the generator checkpoint "
            f"is {generator.name}; re-download the model so that both files come from the same "
            "release."
        )
        self.renderer = renderer
        self.generator = generator


class UnknownModelVersionError(ModelVersionError):
    """A checkpoint fits no known model version; `resemblance` says which one it is closest to
    (its key lists are for a debug log, not for the message)."""

    def __init__(self, part: ModelPart, resemblance: Resemblance) -> None:
        r = resemblance
        differ = "1 key differs" if r.differing == 1 else f"{r.differing} keys differ"
        super().__init__(
            f"The {part} checkpoint matches no IMTalker version this app knows: it most resembles "
            f"{r.version.name}, but {differ} ({len(r.missing)} missing, "
            f"{len(r.unexpected)} unexpected). Re-download the model, or update imtalker-cam "
            "if the file comes from a newer IMTalker release."
        )
        self.part = part
        self.resemblance = resemblance
