"""The NVIDIA environment report from recorded `nvidia-smi` outputs (the GPU is faked; the
parsing, the driver-vs-CUDA rule and the library attribution are the real code)."""

from __future__ import annotations

import subprocess

import pytest

from runtime.model.execution import cuda_env
from runtime.model.execution.cuda_env import (
    DriverInfo,
    driver_problem,
    loaded_libraries,
    read_driver,
)

QUERY_550 = "NVIDIA GeForce RTX 4070 Laptop GPU, 550.54.15, 8188 MiB\n"
HEADER_550 = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""
QUERY_580 = "NVIDIA H200, 580.65.06, 143771 MiB\nNVIDIA H200, 580.65.06, 143771 MiB\n"
HEADER_580 = "| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0 |\n"


def smi(query: str, header: str) -> cuda_env.Runner:
    def run(command: list[str]) -> str:
        assert command[0] == "nvidia-smi"
        return query if len(command) > 1 else header

    return run


def test_reads_driver_gpus_and_cuda_from_nvidia_smi() -> None:
    info = read_driver(smi(QUERY_580, HEADER_580))
    assert info.present and info.driver_version == "580.65.06" and info.driver_major == 580
    assert info.max_cuda == "13.0"
    assert [g.name for g in info.gpus] == ["NVIDIA H200", "NVIDIA H200"]
    assert info.gpus[0].memory_mib == 143771


def test_old_driver_for_a_cuda_13_build_says_exactly_what_to_do() -> None:
    info = read_driver(smi(QUERY_550, HEADER_550))
    assert driver_problem(info, "13.0") == (
        "NVIDIA driver 550 supports CUDA 12.4; this build needs CUDA 13: "
        "update the driver to 580 or newer"
    )
    assert driver_problem(info, "12.8") is None  # same major: the driver runs it
    assert driver_problem(read_driver(smi(QUERY_580, HEADER_580)), "13.0") is None
    assert driver_problem(info, None) is None  # CPU-only onnxruntime: nothing to say


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (FileNotFoundError("nvidia-smi"), "no NVIDIA driver (nvidia-smi not found)"),
        (
            subprocess.CalledProcessError(
                9, ["nvidia-smi"], stderr="NVIDIA-SMI has failed because it couldn't communicate"
            ),
            "nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate",
        ),
    ],
)
def test_absent_or_broken_driver_is_stated(error: Exception, reason: str) -> None:
    def run(command: list[str]) -> str:
        raise error

    info = read_driver(run)
    assert info == DriverInfo(present=False, reason=reason)
    assert driver_problem(info, "13.0") is None


def test_loaded_libraries_name_the_wheel_or_the_system() -> None:
    maps = [
        "7f00-7f10 r-xp 00000000 08:01 1 /home/u/.venv/lib/python3.12/site-packages/nvidia/"
        "cudnn/lib/libcudnn.so.9",
        "7f10-7f20 r-xp 00000000 08:01 2 /usr/local/cuda-13.0/lib64/libcublasLt.so.13",
        "7f20-7f30 r-xp 00000000 08:01 3 /usr/lib/x86_64-linux-gnu/libc.so.6",
        "7f30-7f40 r-xp 00000000 08:01 1 /home/u/.venv/lib/python3.12/site-packages/nvidia/"
        "cudnn/lib/libcudnn.so.9",
    ]
    libs = loaded_libraries(maps)
    assert [(lib.name, lib.source) for lib in libs] == [
        ("libcudnn.so.9", "pip wheel nvidia/cudnn"),
        ("libcublasLt.so.13", "system"),
    ]


def test_environment_on_this_machine_serialises() -> None:
    env = cuda_env.cuda_environment(smi(QUERY_550, HEADER_550), preload=False)
    data = env.to_json()
    assert data["driver"]["driver_major"] == 550
    assert data["build_cuda"] == cuda_env.build_cuda_version()
    if data["build_cuda"] and data["build_cuda"].startswith("13"):
        assert data["problem"].startswith("NVIDIA driver 550 supports CUDA 12.4")


def test_probe_names_the_old_driver_instead_of_the_library_symptom(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime as ort

    from runtime.model.execution import providers

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("a CPU-only onnxruntime: there is no CUDA provider to fail")
    if cuda_env.build_cuda_version() is None or not cuda_env.build_cuda_version().startswith("13"):
        pytest.skip("the sentence is for a CUDA 13 build")
    monkeypatch.setattr(cuda_env, "read_driver", lambda: read_driver(smi(QUERY_550, HEADER_550)))
    providers.reset_probes()
    try:
        probe = providers.probe_provider("CUDAExecutionProvider")
        if probe.initialises:
            pytest.skip("CUDA works here")
        assert probe.reason == (
            "NVIDIA driver 550 supports CUDA 12.4; this build needs CUDA 13: "
            "update the driver to 580 or newer"
        )
    finally:
        providers.reset_probes()
