"""The NNCF work of `runtime.model.compile.quantize`, in a child process of its own (its main
thread): ``python -m runtime.model.compile.quantize_child --job JOB.json``.

A child because NNCF imports torch whenever it is installed (the `convert` extra), and the app's
processes never import torch; here torch is hidden from NNCF before it is imported (an entry of
None in `sys.modules` reads as "not installed" to `importlib.util.find_spec` and to `import`),
as is OpenVINO's telemetry package, so nothing is sent anywhere. It also keeps the memory of a
full-size quantization out of the app.

The job (JSON, written by the parent): the renderer's ONNX file, the calibration and validation
inputs (`.npz`: each distinct array once, and an index of which each sample uses), the
settings, the output folder. The child writes ``renderer.xml``/``.bin`` (OpenVINO IR, weights
in f32 where kept) and ``result.json``: the layers NNCF quantized and those kept (or reverted
to) f32, and the frames' mean/p99 |d| and PSNR against the fp32 graph on the validation
inputs. Progress goes to stderr as log lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]
Sample = dict[str, Array]

WEIGHTED_OPS = frozenset({"Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"})
"""The layers int8 is about: their activations are quantized by a FakeQuantize in front."""
IR_NAME = "renderer.xml"
RESULT_NAME = "result.json"


def load_samples(path: Path) -> list[Sample]:
    """The samples `quantize._save_samples` wrote (an index of sample -> input -> array key;
    arrays shared between samples are loaded once)."""
    with np.load(path) as data:
        index = json.loads(str(data["index"]))
        arrays = {key: np.asarray(data[key], np.float32) for key in data.files if key != "index"}
    return [{name: arrays[key] for name, key in names.items()} for names in index]


def frame_errors(frames: Array, reference: Array) -> tuple[float, float]:
    """Mean and 99th percentile of |frames - reference|."""
    d = np.abs(frames.astype(np.float64) - reference.astype(np.float64))
    return float(d.mean()), float(np.percentile(d, 99))


def psnr_db(frames: Array, reference: Array) -> float | None:
    """PSNR of frames in [0, 1] (None when identical)."""
    mse = float(np.mean((frames.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return None if mse == 0.0 else -10.0 * math.log10(mse)


def quantized_ops(model: Any) -> list[str]:
    """Every operation of `model` with a quantized input (what NNCF counts and reverts)."""
    out = []
    for op in model.get_ordered_ops():
        sources = [v.get_source_output().get_node().get_type_name() for v in op.inputs()]
        if op.get_type_name() != "FakeQuantize" and "FakeQuantize" in sources:
            out.append(op.get_friendly_name())
    return out


def quantized_layers(model: Any) -> tuple[list[str], list[str]]:
    """The weighted layers of `model` with a quantized input, and those without (kept f32)."""
    quantized = set(quantized_ops(model))
    weighted = [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() in WEIGHTED_OPS
    ]
    return [n for n in weighted if n in quantized], [n for n in weighted if n not in quantized]


class Scorer:
    """The accuracy-control metric: 1 - max(mean |d| / mean limit, p99 |d| / p99 limit) over
    the validation frames against fp32 (1 for fp32 itself; a model is within tolerance while
    its drop from fp32 is at most 1). Per sample too, which NNCF ranks layers by. NNCF passes
    any subset of the validation samples (the very objects it was given): each is matched with
    its fp32 frames by identity."""

    def __init__(
        self, samples: list[Sample], references: list[Array], *, mean_limit: float, p99_limit: float
    ) -> None:
        self.references = {id(s): r for s, r in zip(samples, references, strict=True)}
        self.mean_limit = mean_limit
        self.p99_limit = p99_limit

    def score(self, mean: float, p99: float) -> float:
        return 1.0 - max(mean / self.mean_limit, p99 / self.p99_limit)

    def __call__(self, compiled: Any, samples: Iterable[Sample]) -> tuple[float, list[float]]:
        pairs = [
            (np.asarray(compiled(s)["frames"], np.float32), self.references[id(s)]) for s in samples
        ]
        per = [self.score(*frame_errors(f, r)) for f, r in pairs]
        frames, references = (np.concatenate(side) for side in zip(*pairs, strict=True))
        return self.score(*frame_errors(frames, references)), per


def run(job: Mapping[str, Any]) -> dict[str, Any]:
    """Quantize as `job` says and write the IR and its result; returns the result."""
    import nncf
    import openvino as ov

    # NNCF's own lines (which layers it reverts, and why) go to stderr with ours; its progress
    # bars go to stdout, which the parent does not read.
    nncf_logger = logging.getLogger("nncf")
    nncf_logger.handlers.clear()
    nncf_logger.propagate = True

    settings = job["settings"]
    out = Path(job["out"])
    core = ov.Core()
    model = core.read_model(job["graph"])
    calibration = load_samples(Path(job["calibration"]))
    validation = load_samples(Path(job["validation"]))
    logger.info(
        "quantizing %s: %d calibration and %d validation samples",
        job["graph"], len(calibration), len(validation),
    )  # fmt: skip
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    reference = core.compile_model(model, "CPU", f32)
    references = [np.asarray(reference(s)["frames"], np.float32) for s in validation]
    del reference
    scorer = Scorer(
        validation, references, mean_limit=settings["frames_mean"], p99_limit=settings["frames_p99"]
    )
    common: dict[str, Any] = {
        "preset": nncf.QuantizationPreset(settings["preset"]),
        "model_type": nncf.ModelType(settings["model_type"]) if settings["model_type"] else None,
        "subset_size": len(calibration),
        "target_device": nncf.TargetDevice.CPU,
        "ignored_scope": nncf.IgnoredScope(
            patterns=list(settings.get("ignored_patterns", ())), validate=False
        ),
    }
    reverted: list[str] = []
    if settings["accuracy_control"]:
        with tempfile.TemporaryDirectory(dir=out) as initial_dir:
            quantized = nncf.quantize_with_accuracy_control(
                model,
                nncf.Dataset(calibration),
                nncf.Dataset(validation),
                scorer,
                max_drop=1.0,
                drop_type=nncf.DropType.ABSOLUTE,
                advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
                    max_num_iterations=settings["max_reverted"],
                    ranking_subset_size=min(settings["ranking_samples"], len(validation)),
                    intermediate_model_dir=initial_dir,
                ),
                **common,
            )
            initial_xml = Path(initial_dir) / "intermediate_model.xml"
            if initial_xml.is_file():  # absent when the first quantization was within already
                after = set(quantized_ops(quantized))
                before = quantized_ops(core.read_model(str(initial_xml)))
                reverted = [name for name in before if name not in after]
    else:
        quantized = nncf.quantize(model, nncf.Dataset(calibration), **common)
    compiled = core.compile_model(quantized, "CPU", f32)
    frames = np.concatenate([np.asarray(compiled(s)["frames"], np.float32) for s in validation])
    del compiled
    everything = np.concatenate(references)
    mean, p99 = frame_errors(frames, everything)
    layers, kept = quantized_layers(quantized)
    # f32 weights: a layer kept in f32 for accuracy must not lose it to fp16 storage.
    ov.save_model(quantized, str(out / IR_NAME), compress_to_fp16=False)
    result = {
        "quantized_layers": layers,
        "f32_layers": kept,
        "reverted_layers": reverted,
        "validation": {
            "samples": len(validation),
            "frames_mean_abs_diff": mean,
            "frames_p99_abs_diff": p99,
            "psnr_db": psnr_db(frames, everything),
        },
    }
    (out / RESULT_NAME).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "int8: %d layers quantized, %d in f32 (%d reverted); mean |d| %.2e, p99 %.2e",
        len(layers), len(kept), len(reverted), mean, p99,
    )  # fmt: skip
    return result


def hide_from_nncf() -> None:
    """torch and OpenVINO's telemetry read as not installed for the rest of this process."""
    sys.modules["torch"] = None  # type: ignore[assignment]
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantize_child")
    parser.add_argument("--job", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    job = json.loads(args.job.read_text(encoding="utf-8"))
    hide_from_nncf()
    run(job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
