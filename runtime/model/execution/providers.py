"""Which ONNX Runtime execution providers really work in this process (any thread; the first
probe of a provider takes well under a second, later calls are free).

ONNX Runtime lists every provider it was compiled with (`get_available_providers()`), but a GPU
provider whose CUDA/cuDNN/TensorRT libraries are missing fails only when a session is created:
it prints C++ errors on the native stderr and silently runs the session on the CPU. Each
provider is therefore probed once per process on a one-node graph, with the native stderr
captured so the reason (e.g. ``libcublasLt.so.13 missing``) can be reported instead of sprayed
over the terminal. `runtime.model.execution.sessions` requests only providers that passed;
`doctor` shows the whole report.

onnxruntime and onnx are imported inside the probe, so this module (and `ProviderProbe`) stays
importable when onnxruntime itself is missing; that case is reported, not raised.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
COREML = "CoreMLExecutionProvider"
"""Apple's CoreML (onnxruntime's macOS builds): the GPU and Neural Engine of Apple Silicon."""
DIRECTML = "DmlExecutionProvider"
"""DirectML (the onnxruntime-directml build on Windows): any DirectX 12 GPU (AMD, Intel)."""

SHORT_NAMES = {
    CPU: "CPU",
    CUDA: "CUDA",
    TENSORRT: "TensorRT",
    COREML: "CoreML",
    DIRECTML: "DirectML",
}


@dataclass(frozen=True)
class ProviderProbe:
    """One provider's probe. `used`: the providers the probe session actually ran on."""

    name: str
    initialises: bool
    used: tuple[str, ...]
    detail: str  # "ok", or what happened and ONNX Runtime's own reason

    @property
    def reason(self) -> str:
        """The failure in a few words (``libcublasLt.so.13 missing``); "" when it works."""
        if self.initialises:
            return ""
        return short_reason(self.detail)


@dataclass(frozen=True)
class ProviderReport:
    """Every compiled-in provider and whether it initialises, in ONNX Runtime's order."""

    compiled: tuple[str, ...]
    probes: tuple[ProviderProbe, ...]

    @property
    def usable(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.probes if p.initialises)

    def probe(self, name: str) -> ProviderProbe | None:
        for p in self.probes:
            if p.name == name:
                return p
        return None

    def summary(self) -> str:
        """One line for a status bar: ``CPU (CUDA unusable: libcublasLt.so.13 missing)``."""
        usable = [SHORT_NAMES.get(n, n) for n in self.usable] or ["none"]
        broken = [
            f"{SHORT_NAMES.get(p.name, p.name)} unusable: {p.reason}"
            for p in self.probes
            if not p.initialises
        ]
        return ", ".join(usable) + (f" ({'; '.join(broken)})" if broken else "")


_lock = threading.Lock()
_probes: dict[str, ProviderProbe] = {}
_warned: set[str] = set()


def compiled_providers() -> tuple[str, ...]:
    """Providers this onnxruntime build offers (empty when onnxruntime does not import)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    return tuple(ort.get_available_providers())


def probe_provider(name: str) -> ProviderProbe:
    """Whether `name` really initialises here; probed once per process, then cached."""
    with _lock:
        cached = _probes.get(name)
        if cached is None:
            cached = _probes[name] = _probe(name)
            logger.debug("provider probe %s: %s", name, cached.detail)
        return cached


def provider_report() -> ProviderReport:
    """Probe every compiled-in provider (cached per process); what `doctor` shows."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        failed = ProviderProbe("onnxruntime", False, (), f"not importable: {exc}")
        return ProviderReport(compiled=(), probes=(failed,))
    compiled = compiled_providers()
    return ProviderReport(compiled=compiled, probes=tuple(probe_provider(n) for n in compiled))


def usable_providers(wanted: tuple[str, ...]) -> tuple[str, ...]:
    """`wanted` minus what is not compiled in or fails its probe, CPU always last.

    A GPU provider that is compiled in but does not initialise is logged once per process,
    at INFO ("CUDA provider compiled in but unusable: ...; running on CPU"): on a machine
    without a GPU that is how things are, not news for every command; `doctor` (and the app's
    status) say it where the user looks for it (`unusable_warning`).
    """
    compiled = set(compiled_providers())
    chosen: list[str] = []
    dropped: list[ProviderProbe] = []
    for name in wanted:
        if name == CPU or name not in compiled or name in chosen:
            continue
        probe = probe_provider(name)
        if probe.initialises:
            chosen.append(name)
        else:
            dropped.append(probe)
    chosen.append(CPU)
    for probe in dropped:
        _warn_once(probe, running_on=chosen[0])
    return tuple(chosen)


def unusable_warning(probe: ProviderProbe, *, running_on: str = CPU) -> str:
    """The sentence for a provider compiled in that does not initialise."""
    return (
        f"{SHORT_NAMES.get(probe.name, probe.name)} provider compiled in but unusable: "
        f"{probe.reason}; running on {SHORT_NAMES.get(running_on, running_on)}"
    )


def _warn_once(probe: ProviderProbe, *, running_on: str) -> None:
    with _lock:
        if probe.name in _warned:
            return
        _warned.add(probe.name)
    logger.info("%s", unusable_warning(probe, running_on=running_on))


def reset_probes() -> None:
    """Forget the probes and warnings (tests; or after the user installed CUDA libraries)."""
    with _lock:
        _probes.clear()
        _warned.clear()


# -- the probe --------------------------------------------------------------------------------


def _probe(name: str) -> ProviderProbe:
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as exc:
        return ProviderProbe(name, False, (), f"onnxruntime not importable: {exc}")
    if name not in ort.get_available_providers():
        return ProviderProbe(name, False, (), "not compiled into this onnxruntime build")
    if name in (CUDA, TENSORRT):
        from runtime.model.execution.cuda_env import preload_cuda_libraries

        preload_cuda_libraries()  # CUDA/cuDNN from the nvidia-* wheels, before any session
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "native_stderr.log"
        error: str | None = None
        used: tuple[str, ...] = ()
        ok = False
        with _captured_native_stderr(log_path):
            try:
                options = ort.SessionOptions()
                options.log_severity_level = 3
                session = ort.InferenceSession(
                    _one_node_model(), sess_options=options, providers=[name]
                )
                out = session.run(["y"], {"x": np.array([-1.0, 2.0], dtype=np.float32)})[0]
                used = tuple(session.get_providers())
                ok = used[0] == name and bool(np.allclose(out, [0.0, 2.0]))
            except Exception as exc:  # any provider failure is a finding, not a crash
                error = f"{type(exc).__name__}: {exc}"
        native = log_path.read_text(errors="replace")
    if ok:
        return ProviderProbe(name, True, used, "ok")
    reason = _first_error_line(native) or error
    if name in (CUDA, TENSORRT):
        reason = _driver_sentence() or reason
    fell_back = f"falls back to {used[0]}" if used else "fails"
    return ProviderProbe(name, False, used, f"{fell_back}: {reason}" if reason else fell_back)


def _driver_sentence() -> str | None:
    """When the driver is too old for this build's CUDA major, that is the reason to show
    (the library error ONNX Runtime reports is only its symptom)."""
    from runtime.model.execution.cuda_env import build_cuda_version, driver_problem, read_driver

    return driver_problem(read_driver(), build_cuda_version())


_PROBE_GRAPH = (
    b'\x08\x08:7\n\x0c\n\x01x\x12\x01y"\x04Relu\x12\x05probeZ\x0f\n\x01x\x12\n\n\x08\x08'
    b"\x01\x12\x04\n\x02\x08\x02b\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x02B\x04\n"
    b"\x00\x10\x11"
)
"""A serialised one-node graph, y = Relu(x) over float[2] (IR 8, opset 17), written out as
bytes because building it needs `onnx`, which only the conversion extra installs (the test
rebuilds it with onnx's helpers and compares)."""


def _one_node_model() -> bytes:
    """The probe graph (InferenceSession takes the bytes directly)."""
    return _PROBE_GRAPH


@contextlib.contextmanager
def _captured_native_stderr(path: Path) -> Iterator[Path]:
    """Send file descriptor 2 (where ONNX Runtime's C++ logger writes) to `path` meanwhile.

    Process-wide for the duration of one probe: another thread's stderr output in that window
    lands in the log too. Python-level warnings and stdout chatter are swallowed as well.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a windowed app): nothing to capture or to spray on
        path.touch()
        yield path
        return
    try:
        with path.open("wb") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    yield path
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


_ANSI = re.compile(r"\x1b\[[0-9;]*m|\[[0-9;]*m")


def _first_error_line(log: str) -> str | None:
    """ONNX Runtime's own explanation from its native log, without colour codes."""
    clean = _ANSI.sub("", log)
    for marker in ("with error: ", "LoadLibrary failed", "Failed to create", "Please install"):
        for line in clean.splitlines():
            if marker in line:
                text = line.split(marker, 1)[1] if marker == "with error: " else line
                return text.strip()
    return None


_MISSING_LIB = re.compile(r"([\w.+-]+\.so[\w.]*): cannot open shared object file")
_MISSING_DLL = re.compile(r"LoadLibrary failed with error 126\b")


def short_reason(detail: str) -> str:
    """A provider failure in a few words: a missing shared library by name, else the detail."""
    missing = _MISSING_LIB.search(detail)
    if missing:
        return f"{missing.group(1)} missing"
    if _MISSING_DLL.search(detail):
        return "a CUDA or cuDNN DLL is missing"
    if detail.startswith(("falls back", "fails")) and "NVIDIA driver" in detail:
        return detail.partition(": ")[2].strip()
    head, sep, tail = detail.partition(": ")
    text = tail if sep and head.startswith(("falls back", "fails")) else detail
    return text.strip() or "unknown reason"
