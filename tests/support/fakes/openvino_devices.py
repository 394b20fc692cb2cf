"""Fake OpenVINO devices (an Intel GPU, an NPU) around the real `openvino.Core`, for the device
selection and fallback of `runtime.model.execution.openvino_sessions` on a machine that has
only a CPU.

`FakeCore(devices=("CPU", "GPU.0"), broken=("GPU",))` lists the given devices; compiling for a
listed, working fake device compiles for the real CPU (so runs give real results), for a
`broken` one raises RuntimeError as a driver failure would. `capabilities` overrides a device's
OPTIMIZATION_CAPABILITIES (e.g. a CPU without BF16). `compiled` logs (device, config) per
compile. Install with `install(monkeypatch, core)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openvino as ov
import pytest


class FakeCore:
    def __init__(
        self,
        *,
        devices: tuple[str, ...] = ("CPU",),
        broken: tuple[str, ...] = (),
        capabilities: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self._real = ov.Core()
        self.available_devices = list(devices)
        self._broken = broken
        self._capabilities = dict(capabilities or {})
        self.compiled: list[tuple[str, dict[str, Any]]] = []

    def read_model(self, path: str) -> ov.Model:
        return self._real.read_model(path)

    def get_property(self, device: str, name: str) -> Any:
        family = device.split(".")[0]
        if name == "OPTIMIZATION_CAPABILITIES" and family in self._capabilities:
            return list(self._capabilities[family])
        if family != "CPU":
            if name == "OPTIMIZATION_CAPABILITIES":
                return ["FP32", "FP16"]
            return f"fake {family}" if name == "FULL_DEVICE_NAME" else ""
        return self._real.get_property("CPU", name)

    def compile_model(self, model: ov.Model, device: str, config: dict[str, Any]) -> Any:
        family = device.split(".")[0]
        self.compiled.append((device, dict(config)))
        if family in self._broken:
            raise RuntimeError(f"[GPU] fake {family} driver: clCreateContext failed")
        real = {
            k: v for k, v in config.items() if family == "CPU" or k != "INFERENCE_PRECISION_HINT"
        }
        return self._real.compile_model(model, "CPU", real)


def install(monkeypatch: pytest.MonkeyPatch, core: FakeCore) -> FakeCore:
    from runtime.model.execution import openvino_sessions

    monkeypatch.setattr(openvino_sessions, "_core", core)
    return core
