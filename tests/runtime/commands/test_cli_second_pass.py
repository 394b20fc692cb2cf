"""The command line's texts (issue 24, item 11): every option of `live` and `render` has a help
text and the sampler's defaults are shown; `doctor` says "compiled in but unusable" once, as a
warning; it lists microphones by the names the app shows, and every model file with its state,
the model version and whether the graphs are converted."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from runtime.commands import cli, doctor_report
from runtime.model.execution.providers import ProviderProbe
from runtime.model.store.model_store import ModelStore
from tests.support.hub_server import standin_files, write_tree


def subparser(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = sub.choices[name]
    return found


@pytest.mark.parametrize("command", ["live", "render"])
def test_every_option_has_a_help_text(command: str) -> None:
    silent = [
        a.option_strings
        for a in subparser(command)._actions
        if a.option_strings and a.dest != "help" and not a.help
    ]
    assert silent == []


def test_sampler_defaults_are_shown() -> None:
    def help_of(command: str, option: str) -> str:
        action = next(a for a in subparser(command)._actions if option in a.option_strings)
        return str(action.help)

    assert "(default 10)" in help_of("live", "--nfe")
    assert "(default 10)" in help_of("render", "--nfe")
    assert "(default 2" in help_of("live", "--lookahead")


def probe(name: str, ok: bool, detail: str) -> ProviderProbe:
    return ProviderProbe(name, ok, (name,) if ok else (), detail)


def report(providers: tuple[ProviderProbe, ...]) -> doctor_report.Report:
    return doctor_report.Report(
        python="3.12",
        platform="Linux",
        packages={},
        providers_compiled=tuple(p.name for p in providers),
        providers=providers,
        gpu={"present": False, "devices": [], "detail": "no NVIDIA driver found"},
        audio_inputs=("Headset Microphone",),
        audio_error=None,
        virtual_camera={"os": "Linux", "available": False, "detail": "no v4l2loopback"},
        models={
            "store": "/s",
            "files": {"renderer.ckpt": False},
            "states": {"renderer.ckpt": "missing"},
            "complete": False,
            "converted": False,
            "model_version": None,
        },
    )


def test_doctor_says_an_unusable_gpu_provider_once_as_a_warning() -> None:
    cuda = probe(
        "CUDAExecutionProvider",
        False,
        "falls back to CPUExecutionProvider: libcublasLt.so.13: cannot open shared object file",
    )
    trt = probe("TensorrtExecutionProvider", False, "libnvinfer.so.10: cannot open shared object")
    text = doctor_report.format_report(
        report((trt, cuda, probe("CPUExecutionProvider", True, "ok")))
    )
    said = [line for line in text.splitlines() if "compiled in but unusable" in line]
    assert said == [
        "  WARNING: CUDA provider compiled in but unusable: libcublasLt.so.13 missing; running "
        "on CPU"
    ]
    ok = doctor_report.format_report(report((probe("CPUExecutionProvider", True, "ok"),)))
    assert "WARNING" not in ok


class FakeSd:
    """PortAudio's view on Linux with PulseAudio: ALSA aliases beside a card."""

    class default:  # sounddevice names it so
        device = (1, 3)

    def query_devices(self, kind: str | None = None) -> list[dict[str, Any]]:
        names = ["HDA Intel PCH: ALC257 Analog (hw:0,0)", "pulse", "default", "HDMI 0 (hw:1,3)"]
        channels = [2, 32, 32, 0]
        return [
            {"name": n, "max_input_channels": c, "default_samplerate": 48000.0, "hostapi": 0}
            for n, c in zip(names, channels, strict=True)
        ]

    def query_hostapis(self) -> list[dict[str, Any]]:
        return [{"name": "ALSA"}]


def pactl(args: Sequence[str]) -> str:
    if list(args[1:]) == ["get-default-source"]:
        return "alsa_input.usb-headset\n"
    return json.dumps(
        [
            {"name": "alsa_input.pci.analog", "description": "Built-in Audio Analog Stereo"},
            {"name": "alsa_input.usb-headset", "description": "Headset Microphone"},
            {
                "name": "alsa_output.pci.analog.monitor",
                "description": "Monitor of Built-in Audio",
                "monitor_of_sink": "alsa_output.pci.analog",
            },
        ]
    )


def test_doctor_lists_microphones_by_the_names_the_app_shows() -> None:
    inputs, error = doctor_report.probe_audio(
        FakeSd(),  # type: ignore[arg-type]
        pactl=pactl,
        platform="linux",
    )
    assert error is None
    assert inputs == ("Built-in Audio Analog Stereo", "Headset Microphone (system default)")


def test_doctor_shows_every_model_file_with_version_and_converted_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))
    empty = doctor_report.probe_models()
    manifest = [e.path for e in ModelStore(Path(empty["store"])).manifest]
    assert len(manifest) == 6 and list(empty["states"]) == manifest
    assert set(empty["states"].values()) == {"missing"}
    assert empty["converted"] is False and empty["model_version"] is None

    store = ModelStore(Path(empty["store"]))
    store.import_files([write_tree(tmp_path / "files", standin_files())])
    models = doctor_report.probe_models()
    assert set(models["states"].values()) == {"verified"}
    assert models["model_version"] == "v1" and models["complete"] and not models["converted"]
    lines = doctor_report.format_models(models)
    assert "  model version: IMTalker v1" in lines
    assert sum("verified" in line for line in lines) == 6
    assert lines[-1].startswith("  converted for this computer: no (the first start converts")
