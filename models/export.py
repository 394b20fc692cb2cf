"""ONNX export of every graph in `runtime.model.contract` (own process: `python -m models.export`).

Run as a child of the app so that unpickling checkpoints and torch never touch the app process.
Progress goes to stdout as JSON lines `{"graph": name, "done": i, "total": n}`; errors go to
stderr and the exit code is non-zero. Each graph is written with its architecture config as
JSON beside it (`<graph>.onnx` + `<graph>.json`), which names the model version
(`"model_version": "v1" | "v2"`, detected from the checkpoints' keys); the graphs' input shapes
are that version's (`runtime.model.contract.graphs(version)`).

The legacy TorchScript exporter is used (`dynamo=False`): it needs no onnxscript, handles the
dynamic batch/length axes these graphs need directly, and was measured to give graphs ONNX
Runtime runs faster than the eager model on this CPU (see tests/bench/).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from models.audio_encoder import AudioEncoder
from models.fp16 import to_fp16
from models.generator.generator import FMGenerator
from models.loading import LoadedModels, load_models
from models.renderer.renderer import IMTRenderer, SourceCache
from runtime.model import contract, loader_files
from runtime.model.contract import GraphSpec

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


class AudioEncoderGraph(nn.Module):
    def __init__(self, encoder: AudioEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # (B, S) -> (B, S / 640, 768)
        out: torch.Tensor = self.encoder(audio)
        return out


class ConditionerGraph(nn.Module):
    def __init__(self, generator: FMGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(
        self,
        audio_features: torch.Tensor,  # (B, T, 768)
        gaze: torch.Tensor,  # (B, T, 2)
        pose: torch.Tensor,  # (B, T, 3)
        cam: torch.Tensor,  # (B, T, 3)
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        g = self.generator
        return (
            g.audio_projection(audio_features),
            g.gaze_projection(gaze),
            g.pose_projection(pose),
            g.cam_projection(cam),
        )  # each (B, T, 32)


class VelocityGraph(nn.Module):
    def __init__(self, generator: FMGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(
        self,
        t: torch.Tensor,
        x: torch.Tensor,
        prev_x: torch.Tensor,
        ref_x: torch.Tensor,
        audio_cond: torch.Tensor,
        prev_audio_cond: torch.Tensor,
        gaze_cond: torch.Tensor,
        prev_gaze_cond: torch.Tensor,
        pose_cond: torch.Tensor,
        prev_pose_cond: torch.Tensor,
        cam_cond: torch.Tensor,
        prev_cam_cond: torch.Tensor,
        cfg_scale: torch.Tensor,
    ) -> torch.Tensor:  # (B, 50, 32)
        return self.generator.velocity(
            t, x, prev_x, ref_x, audio_cond, prev_audio_cond, gaze_cond, prev_gaze_cond,
            pose_cond, prev_pose_cond, cam_cond, prev_cam_cond, cfg_scale,
        )  # fmt: skip


def _avatar_names() -> tuple[str, ...]:
    return tuple(t.name for t in contract.AVATAR_TENSORS)


class AvatarEncoderGraph(nn.Module):
    def __init__(self, renderer: IMTRenderer) -> None:
        super().__init__()
        self.renderer = renderer

    def forward(self, source: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (1, 3, S, S)
        encoding = self.renderer.encode_source(source)
        named = self.renderer.precompute_source(encoding).named()
        return (encoding.motion, *(named[n] for n in _avatar_names()))


class RendererGraph(nn.Module):
    def __init__(self, renderer: IMTRenderer) -> None:
        super().__init__()
        self.renderer = renderer

    def forward(self, motion: torch.Tensor, *avatar: torch.Tensor) -> torch.Tensor:
        named = dict(zip(_avatar_names(), avatar, strict=True))
        # The coarse appearance levels are only read through their cached keys/values.
        for level in range(self.renderer.config.num_coarse_levels):
            named.setdefault(contract.appearance_name(level), torch.empty(0))
        cache = SourceCache.from_named(named, self.renderer.config)
        return self.renderer.render_precomputed(motion, cache)  # (B, 3, 512, 512)


class MotionEncoderGraph(nn.Module):
    def __init__(self, renderer: IMTRenderer) -> None:
        super().__init__()
        self.renderer = renderer

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, 32)
        return self.renderer.encode_motion(image)


def _example(spec: GraphSpec, sizes: dict[str, int]) -> tuple[torch.Tensor, ...]:
    """Example inputs for tracing; dynamic axes get sizes that are unlikely to be special."""
    g = torch.Generator().manual_seed(0)
    out = []
    for t in spec.inputs:
        shape = [d if isinstance(d, int) else sizes[d] for d in t.shape]
        value = torch.rand(shape, generator=g)
        out.append(value)
    return tuple(out)


def graph_modules(models: LoadedModels) -> dict[str, nn.Module]:
    return {
        contract.AUDIO_ENCODER.name: AudioEncoderGraph(models.audio_encoder),
        contract.CONDITIONER.name: ConditionerGraph(models.generator),
        contract.VELOCITY.name: VelocityGraph(models.generator),
        contract.AVATAR_ENCODER.name: AvatarEncoderGraph(models.renderer),
        contract.RENDERER.name: RendererGraph(models.renderer),
        contract.MOTION_ENCODER.name: MotionEncoderGraph(models.renderer),
    }


def architecture_config(models: LoadedModels, spec: GraphSpec) -> dict[str, Any]:
    return {
        "graph": spec.name,
        "model_version": models.version.name,
        "exporter_version": contract.EXPORTER_VERSION,
        "opset": contract.OPSET,
        "torch": torch.__version__,
        "inputs": {t.name: {"dtype": t.dtype, "shape": list(t.shape)} for t in spec.inputs},
        "outputs": {t.name: {"dtype": t.dtype, "shape": list(t.shape)} for t in spec.outputs},
        "renderer": models.renderer.config.to_dict(),
        "generator": models.generator.config.to_dict(),
        "audio_encoder": dataclasses.asdict(models.audio_encoder.config),
        "version": dataclasses.asdict(models.version),
    }


def export_graph(module: nn.Module, spec: GraphSpec, path: Path) -> None:
    """Trace `module` to `path` with the contract's names and dynamic axes, then check it."""
    sizes = {"batch": 2, "samples": 7 * contract.SAMPLES_PER_FRAME, "frames": 7}
    example = _example(spec, sizes)
    dynamic_axes = {t.name: t.dynamic_axes for t in (*spec.inputs, *spec.outputs) if t.dynamic_axes}
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter's deprecation notice and tracer warnings about shape arithmetic
        # (intended: the frame count follows the input length) are not actionable here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            example,
            str(path),
            dynamo=False,
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_axes=dynamic_axes,
            opset_version=contract.OPSET,
            do_constant_folding=True,
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != list(spec.input_names) or got_out != list(spec.output_names):
        raise RuntimeError(
            f"exported {spec.name} has inputs {got_in} and outputs {got_out}, "
            f"the contract says {list(spec.input_names)} -> {list(spec.output_names)}"
        )


def export_fp16(fp32_path: Path, path: Path) -> dict[str, Any]:
    """Write the mixed-precision variant of an exported graph (`models.fp16`); returns what
    stayed fp32, for the graph's config JSON."""
    converted, info = to_fp16(onnx.load(str(fp32_path)))
    onnx.save(converted, str(path))
    onnx.checker.check_model(str(path))
    info["file"] = path.name
    return info


def export_all(
    models: LoadedModels,
    out_dir: Path,
    *,
    names: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Export the chosen graphs (all by default) into `out_dir`; returns the .onnx paths."""
    modules = graph_modules(models)
    specs = [s for s in contract.graphs(models.version) if names is None or s.name in names]
    out_dir.mkdir(parents=True, exist_ok=True)
    # Which files built these graphs, so the cache can refuse graphs from files it did not key.
    sources = json.dumps(dict(sorted(models.sources.items())), indent=2)
    (out_dir / loader_files.SOURCES_FILE).write_text(sources + "\n")
    written = []
    for i, spec in enumerate(specs):
        path = out_dir / spec.filename
        export_graph(modules[spec.name], spec, path)
        config = architecture_config(models, spec)
        if spec.name in contract.FP16_GRAPHS:
            config["fp16_variant"] = export_fp16(path, out_dir / spec.fp16_filename)
        (out_dir / spec.config_filename).write_text(json.dumps(config, indent=2) + "\n")
        written.append(path)
        if progress is not None:
            progress(spec.name, i + 1, len(specs))
    return written


def _print_progress(name: str, done: int, total: int) -> None:
    sys.stdout.write(json.dumps({"graph": name, "done": done, "total": total}) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.export", description=__doc__)
    parser.add_argument("--weights", type=Path, required=True, help="published-layout folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the graphs")
    parser.add_argument("--graphs", help="comma-separated subset (default: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.graphs.split(",") if args.graphs else None
    try:
        models = load_models(args.weights)
        export_all(models, args.out, names=names, progress=_print_progress)
    except Exception as exc:  # reported to the parent process as one clear line
        sys.stderr.write(f"export failed: {type(exc).__name__}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
