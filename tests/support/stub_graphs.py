"""Tiny ONNX stand-ins for every graph of `runtime.model.contract`, with the real I/O contract.

Names, dtypes and dynamic axes come from the contract itself, so the runtime opens them with
its real session code. The math is trivial and checkable, so a test can tell what went in
from what comes out, and the models cost (almost) nothing, so the pipeline's own overhead shows:

- audio_encoder: `features[b, f, :] = RMS of audio frame f` (640 samples), every channel.
- conditioner: `audio_cond = mean(features)` on every channel; gaze -> channels 0, 1;
  pose -> channels 2, 3, 4; cam -> channels 5, 6, 7 (linear, no bias).
- velocity: `gain * (target - x) / (1 - t)` with
  `target = ref_x + cfg * audio_cond + gaze_cond + pose_cond + cam_cond + PREV_GAIN * mean(prev_x)`;
  with gain 1 the Euler sampler lands exactly on `target` whatever the noise and steps; a gain
  below 1 leaves a trace of the noise (to check that the same noise is used).
- avatar_encoder: `source_motion[0:3]` = mean RGB of the source, zero elsewhere; every
  per-avatar tensor (id_latent, appearance, cross keys/values) = mean of the source.
- renderer: `frames[b, c, y, x] = 0.8 * sigmoid(motion[b, c] + id_latent[0, 0] - OFFSET)
  + 0.2 * x / 511` (a horizontal ramp, so mirroring shows).
- motion_encoder: `motion[b, 0:3]` = mean RGB of the image, zero elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.model import contract as C
from runtime.model.versions import V1, ModelVersion

PREV_GAIN = 0.5
OFFSET = 2.0
RAMP = 0.2


def _value_info(spec: C.TensorSpec) -> onnx.ValueInfoProto:
    dtype = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}[spec.dtype]
    return helper.make_tensor_value_info(spec.name, dtype, list(spec.shape))


class _Builder:
    def __init__(self, spec: C.GraphSpec) -> None:
        self.spec = spec
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, value: np.ndarray) -> str:
        self._n += 1
        name = f"c{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(
        self, op_type: str, *inputs: str, out: str | None = None, node: str = "", **attrs: object
    ) -> str:
        """Append a node (named `node`, as the exporter names them by module path) and return
        its output's name."""
        self._n += 1
        name = out or f"t{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=node, **attrs))
        return name

    def expand_scalar(self, scalar: str, shape: tuple[int, ...], out: str) -> str:
        """A (1, 1, ...) tensor broadcast to a fixed shape."""
        return self.op("Expand", scalar, self.const(np.array(shape, np.int64)), out=out)

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            f"stub_{self.spec.name}",
            [_value_info(t) for t in self.spec.inputs],
            [_value_info(t) for t in self.spec.outputs],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", C.OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def _selector(rows: int, first_channel: int, width: int) -> np.ndarray:
    m = np.zeros((rows, width), np.float32)
    for i in range(rows):
        m[i, first_channel + i] = 1.0
    return m


def audio_encoder() -> onnx.ModelProto:
    b = _Builder(C.AUDIO_ENCODER)
    framed = b.op("Reshape", "audio", b.const(np.array([0, -1, C.SAMPLES_PER_FRAME], np.int64)))
    power = b.op("ReduceMean", b.op("Mul", framed, framed), axes=[2], keepdims=1)
    rms = b.op("Sqrt", power)  # (B, F, 1)
    b.op("Mul", rms, b.const(np.ones(C.AUDIO_FEATURE_DIM, np.float32)), out="features")
    return b.model()


def conditioner() -> onnx.ModelProto:
    b = _Builder(C.CONDITIONER)
    level = b.op("ReduceMean", "audio_features", axes=[2], keepdims=1)
    b.op("Mul", level, b.const(np.ones(C.COND_DIM, np.float32)), out="audio_cond")
    b.op("MatMul", "gaze", b.const(_selector(2, 0, C.COND_DIM)), out="gaze_cond")
    b.op("MatMul", "pose", b.const(_selector(3, 2, C.COND_DIM)), out="pose_cond")
    b.op("MatMul", "cam", b.const(_selector(3, 5, C.COND_DIM)), out="cam_cond")
    return b.model()


def velocity(gain: float = 1.0) -> onnx.ModelProto:
    b = _Builder(C.VELOCITY)
    t = b.op("Reshape", "t", b.const(np.array([-1, 1, 1], np.int64)))
    remaining = b.op("Sub", b.const(np.array(1.0, np.float32)), t)
    ref = b.op("Unsqueeze", "ref_x", b.const(np.array([1], np.int64)))
    prev = b.op("ReduceMean", "prev_x", axes=[1], keepdims=1)
    prev = b.op("Mul", prev, b.const(np.array(PREV_GAIN, np.float32)))
    audio = b.op("Mul", "audio_cond", "cfg_scale")
    target = b.op("Add", ref, audio)
    for name in ("gaze_cond", "pose_cond", "cam_cond"):
        target = b.op("Add", target, name)
    target = b.op("Add", target, prev)
    step = b.op("Div", b.op("Sub", target, "x"), remaining)
    b.op("Mul", step, b.const(np.array(gain, np.float32)), out="velocity")
    return b.model()


def _mean_rgb_motion(b: _Builder, image: str, out: str) -> None:
    pooled = b.op("GlobalAveragePool", image)  # (B, 3, 1, 1)
    rgb = b.op("Reshape", pooled, b.const(np.array([-1, 3], np.int64)))
    b.op("MatMul", rgb, b.const(_selector(3, 0, C.MOTION_DIM)), out=out)


def avatar_encoder(version: ModelVersion = V1) -> onnx.ModelProto:
    b = _Builder(C.avatar_encoder_spec(version))
    _mean_rgb_motion(b, "source", "source_motion")
    mean = b.op("ReduceMean", "source", axes=[1, 2, 3], keepdims=1)  # (1, 1, 1, 1)
    for spec in C.AVATAR_TENSORS:
        shape = tuple(int(d) for d in spec.shape)
        scalar = b.op("Reshape", mean, b.const(np.ones(len(shape), np.int64)))
        b.expand_scalar(scalar, shape, spec.name)
    return b.model()


def renderer() -> onnx.ModelProto:
    b = _Builder(C.RENDERER)
    rgb = b.op(
        "Slice",
        "motion",
        b.const(np.array([0], np.int64)),
        b.const(np.array([3], np.int64)),
        b.const(np.array([1], np.int64)),
    )
    rgb = b.op("Unsqueeze", rgb, b.const(np.array([2, 3], np.int64)))  # (B, 3, 1, 1)
    ident = b.op(
        "Slice",
        "id_latent",
        b.const(np.array([0], np.int64)),
        b.const(np.array([1], np.int64)),
        b.const(np.array([1], np.int64)),
    )
    ident = b.op("Reshape", ident, b.const(np.array([1, 1, 1, 1], np.int64)))
    level = b.op("Sub", b.op("Add", rgb, ident), b.const(np.array(OFFSET, np.float32)))
    face = b.op("Mul", b.op("Sigmoid", level), b.const(np.array(1.0 - RAMP, np.float32)))
    ramp = np.linspace(0.0, RAMP, C.FRAME_SIZE, dtype=np.float32).reshape(1, 1, 1, -1)
    img = b.op("Add", face, b.const(ramp))  # (B, 3, 1, W)
    batch = b.op("Shape", "motion", start=0, end=1)
    size = b.const(np.array([3, C.FRAME_SIZE, C.FRAME_SIZE], np.int64))
    b.op("Expand", img, b.op("Concat", batch, size, axis=0), out="frames")
    return b.model()


def motion_encoder(version: ModelVersion = V1) -> onnx.ModelProto:
    b = _Builder(C.motion_encoder_spec(version))
    _mean_rgb_motion(b, "image", "motion")
    return b.model()


def write_stub_graphs(
    folder: Path, *, velocity_gain: float = 1.0, version: ModelVersion | None = None
) -> Path:
    """Write all six stub graphs into `folder` (file names from the contract). With `version`,
    the encoders take that version's source size and each graph gets the config JSON the
    exporter writes (naming the version); without, no config (as graphs that predate versions,
    read as v1)."""
    folder.mkdir(parents=True, exist_ok=True)
    shape_version = version or V1
    models = {
        C.AUDIO_ENCODER.name: audio_encoder(),
        C.CONDITIONER.name: conditioner(),
        C.VELOCITY.name: velocity(velocity_gain),
        C.AVATAR_ENCODER.name: avatar_encoder(shape_version),
        C.RENDERER.name: renderer(),
        C.MOTION_ENCODER.name: motion_encoder(shape_version),
    }
    for spec in C.graphs(shape_version):
        onnx.save(models[spec.name], str(folder / spec.filename))
        if version is not None:
            config = {"graph": spec.name, "model_version": version.name, "stub": True}
            (folder / spec.config_filename).write_text(json.dumps(config) + "\n")
        if spec.name in C.FP16_GRAPHS:
            # The exporter's own conversion, so `--precision fp16` runs on stubs too.
            from models.fp16 import to_fp16

            onnx.save(to_fp16(models[spec.name])[0], str(folder / spec.fp16_filename))
    return folder


# numpy mirrors of the stub math, for tests that decode what the pipeline did.


def frame_level(motion_channel: np.ndarray | float, id_value: float) -> np.ndarray:
    """Renderer output at ramp 0 (column 0) for a motion channel value."""
    x = np.asarray(motion_channel, np.float64) + id_value - OFFSET
    return (1.0 - RAMP) / (1.0 + np.exp(-x))


def motion_from_level(level: np.ndarray | float, id_value: float) -> np.ndarray:
    """Invert `frame_level` (column-0 pixel value in [0, 1]) back to the motion channel."""
    y = np.clip(np.asarray(level, np.float64) / (1.0 - RAMP), 1e-6, 1 - 1e-6)
    return np.log(y / (1 - y)) - id_value + OFFSET


def conv_renderer(seed: int = 0) -> onnx.ModelProto:
    """A renderer with the real contract and a few Conv/MatMul layers, enough for NNCF's int8
    quantization to have something to quantize (the plain stub has none): the motion through
    two MatMuls to a coarse (B, 3, 8, 8) image, the finest appearance map through two Convs,
    both upsampled to the frame, summed with the identity's projection, a last Conv, sigmoid.
    The layers after the motion's first MatMul are named under /frame_decoder/ as the exporter
    names the synthesis network, the part int8 quantizes (`quantize.MOTION_STAGE`)."""
    rng = np.random.default_rng(seed)

    def w(*shape: int, scale: float = 0.3) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    b = _Builder(C.RENDERER)
    hidden = b.op("Relu", b.op("Add", b.op("MatMul", "motion", b.const(w(C.MOTION_DIM, 64))),
                               b.const(w(64, scale=0.1))))  # fmt: skip
    coarse = b.op("MatMul", hidden, b.const(w(64, 3 * 8 * 8, scale=0.2)),
                  node="/frame_decoder/coarse/MatMul")  # fmt: skip
    coarse = b.op("Reshape", coarse, b.const(np.array([-1, 3, 8, 8], np.int64)))
    ident = b.op("MatMul", "id_latent", b.const(w(C.ID_DIM, 3, scale=0.05)),
                 node="/frame_decoder/identity/MatMul")  # fmt: skip
    ident = b.op("Reshape", ident, b.const(np.array([1, 3, 1, 1], np.int64)))
    finest = C.appearance_name(len(C.APPEARANCE_LEVELS) - 1)
    channels = C.APPEARANCE_LEVELS[-1][0]
    feat = b.op("Conv", finest, b.const(w(8, channels, 3, 3, scale=0.1)), pads=[1, 1, 1, 1],
                node="/frame_decoder/features.0/Conv")  # fmt: skip
    feat = b.op("Conv", b.op("Relu", feat), b.const(w(3, 8, 1, 1)),
                node="/frame_decoder/features.1/Conv")  # fmt: skip
    scales = b.const(np.array([1.0, 1.0, C.FRAME_SIZE / 8, C.FRAME_SIZE / 8], np.float32))
    up = b.op("Resize", coarse, "", scales, mode="linear")
    detail = b.op("Resize", feat, "", b.const(np.array([1.0, 1.0, 2.0, 2.0], np.float32)),
                  mode="linear")  # fmt: skip
    mixed = b.op("Add", b.op("Add", up, detail), ident)
    mixed = b.op("Conv", mixed, b.const(w(3, 3, 3, 3)), b.const(w(3, scale=0.1)),
                 pads=[1, 1, 1, 1], node="/frame_decoder/final_conv/Conv")  # fmt: skip
    # Gentle at the end (frames mostly mid-grey), as a real renderer's output is smooth in its
    # last activations: the int8 error of the layers before stays within the frames' tolerance.
    b.op("Sigmoid", b.op("Mul", mixed, b.const(np.array(0.05, np.float32))), out="frames")
    return b.model()


def write_conv_renderer(folder: Path, *, seed: int = 0) -> Path:
    """Replace the stub renderer in `folder` (from `write_stub_graphs`) with `conv_renderer`."""
    path = folder / C.RENDERER.filename
    onnx.save(conv_renderer(seed), str(path))
    return path
