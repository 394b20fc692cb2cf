"""A fake of ONNX Runtime's CoreML provider (Apple's GPU and Neural Engine) on a machine without
it, for what `runtime.model.execution` asks of it: its probe passes, and a session asked for
CoreML is created on the real CPU provider (so runs give real results) while it says CoreML
runs it. Every creation is logged in `created`: the graph file opened and the providers with
their options, in order. `reject` names graphs CoreML cannot build (by file name up to its
first dot, so their static-shape copies too; the session then raises, as an unsupported
partition does). Install with `install(monkeypatch)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

COREML = "CoreMLExecutionProvider"
CPU = "CPUExecutionProvider"


class _OnCoreML:
    """A real CPU session that reports CoreML first, as a CoreML session does."""

    def __init__(self, real: ort.InferenceSession) -> None:
        self._real = real

    def get_providers(self) -> list[str]:
        return [COREML, CPU]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@dataclass
class FakeCoreML:
    created: list[tuple[Path, list[tuple[str, dict[str, str]]]]] = field(default_factory=list)
    reject: set[str] = field(default_factory=set)

    def opened_on_coreml(self) -> list[Path]:
        """The graph files of the sessions created with CoreML first."""
        return [path for path, providers in self.created if providers[0][0] == COREML]


def install(monkeypatch: pytest.MonkeyPatch) -> FakeCoreML:
    from runtime.model.execution import sessions

    fake = FakeCoreML()
    real_usable = sessions.usable_providers
    real_session = ort.InferenceSession

    def usable(wanted: tuple[str, ...]) -> tuple[str, ...]:
        rest = real_usable(tuple(n for n in wanted if n != COREML))
        return (COREML, *rest) if COREML in wanted else rest

    def create(
        path: str,
        sess_options: ort.SessionOptions | None = None,
        providers: Sequence[str | tuple[str, dict[str, str]]] = (),
    ) -> Any:
        asked = [(p, {}) if isinstance(p, str) else (p[0], dict(p[1])) for p in providers]
        fake.created.append((Path(path), asked))
        on_coreml = bool(asked) and asked[0][0] == COREML
        if on_coreml and Path(path).name.split(".")[0] in fake.reject:
            raise RuntimeError("unsupported partition")
        cpu = [(name, options) for name, options in asked if name != COREML]
        real = real_session(path, sess_options=sess_options, providers=cpu)
        return _OnCoreML(real) if on_coreml else real

    monkeypatch.setattr(sessions, "usable_providers", usable)
    monkeypatch.setattr(sessions.ort, "InferenceSession", create)
    return fake
