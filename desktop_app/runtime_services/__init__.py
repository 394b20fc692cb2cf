"""The one implementation of `desktop_app.services` with `runtime/`: avatars and the model store
(`models`), microphones and webcams (`devices`), live sessions (`live`), the CUDA runtime
fetched on first use (`cuda`).

Only `desktop_app.app` imports this package (`lint-imports` enforces it); widgets are written
against the protocols in `desktop_app.services` and get an implementation handed in.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from desktop_app.runtime_services.cuda import CudaSystem, RuntimeCuda
from desktop_app.runtime_services.devices import RuntimeDevices
from desktop_app.runtime_services.models import RuntimeAvatars, RuntimeModels
from desktop_app.services import Backend
from runtime.media.audio_capture import SoundDeviceLike

if TYPE_CHECKING:
    from desktop_app.runtime_services.live import RuntimeEngine
    from runtime.engine.live.types import HopRecord


def _live_module() -> ModuleType:
    # Loaded on first use: importing the engine loads ONNX Runtime (a few hundred ms), which
    # the window does not need to appear.
    return importlib.import_module("desktop_app.runtime_services.live")


def runtime_backend(
    *,
    graphs_dir: Path | None = None,
    sound_device: SoundDeviceLike | None = None,
    camera_module: Any = None,
    webcam_lister: Callable[[], list[str]] | None = None,
    vcam_backend: str | None = None,
    on_hop: Callable[[HopRecord], None] | None = None,
    models: RuntimeModels | None = None,
    cuda: CudaSystem | None = None,
) -> Backend:
    """The real backend. The app passes nothing; tests pass hardware fakes (a sound device
    module, an OpenCV-like camera module and its device list, a registered pyvirtualcam
    backend), stub graphs, a hop listener to watch the engine, and a fake NVIDIA driver and
    package index for the CUDA runtime's offer."""
    engine_class: type[RuntimeEngine] = _live_module().RuntimeEngine
    models = models or RuntimeModels(graphs_dir=graphs_dir)
    devices = RuntimeDevices(sd=sound_device, cv2_module=camera_module, webcam_lister=webcam_lister)
    engine = engine_class(models=models, devices=devices, vcam_backend=vcam_backend, on_hop=on_hop)
    return Backend(
        avatars=RuntimeAvatars(),
        devices=devices,
        models=models,
        engine=engine,
        cuda=RuntimeCuda(system=cuda, on_installed=engine.reopen_models),
    )
