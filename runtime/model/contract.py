"""The ONNX graph contract: every graph's name, inputs, outputs, dtypes and dynamic axes.

Dependency-free on purpose (standard library only): the exporter (`models/`), the runtime
sessions (`runtime/`) and the stub graphs of the tests all import this one module, so a
renamed tensor is a failing test, not a silent mismatch. Read outputs by name, never by
position. Shapes use ints for fixed axes and strings for dynamic (named) axes.

Graphs whose shapes depend on the model version (the source/driving image side) come from
`graphs(version)` / `graph(name, version)`; the module-level `AVATAR_ENCODER`,
`MOTION_ENCODER`, `GRAPHS` and `SOURCE_SIZE` are v1's, kept for callers that predate versions.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.model.versions import V1, ModelVersion

OPSET = 17
"""The ONNX opset every graph is exported with."""

EXPORTER_VERSION = 5
"""Bump when a graph's contract or export recipe changes; part of the compiled-cache key."""

PRECISIONS = ("fp32", "fp16")
FP16_GRAPHS = ("renderer", "velocity")
"""Graphs the exporter also writes as fp16 (mixed-precision) variants: the two that run every
frame or step. Their inputs and outputs stay float32, so the contract holds for both."""

SAMPLE_RATE = 16_000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
CLIP_FRAMES = 50
PREV_FRAMES = 10
MOTION_DIM = 32
COND_DIM = 32
AUDIO_FEATURE_DIM = 768
ID_DIM = 512
SOURCE_SIZE = V1.source_size
"""v1's input side; prefer `source_size(version)`."""
FRAME_SIZE = 512

# The renderer's appearance pyramid, coarsest first: (channels, side).
APPEARANCE_LEVELS: tuple[tuple[int, int], ...] = (
    (512, 8),
    (512, 16),
    (256, 32),
    (128, 64),
    (64, 128),
    (32, 256),
)
COARSE_LEVELS = 4
"""Levels below 128 px use cross-attention; their keys/values are per-avatar and precomputed."""

Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32" or "int64"
    shape: tuple[Dim, ...]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    doc: str

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"

    @property
    def config_filename(self) -> str:
        return f"{self.name}.json"

    @property
    def fp16_filename(self) -> str:
        """The mixed-precision variant (`FP16_GRAPHS` only): fp16 inside, fp32 inputs/outputs."""
        return f"{self.name}.fp16.onnx"

    def filename_for(self, precision: str) -> str:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        return (
            self.fp16_filename
            if precision == "fp16" and self.name in FP16_GRAPHS
            else self.filename
        )

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, self.name)

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, self.name)


def _by_name(specs: tuple[TensorSpec, ...], name: str, graph: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(f"graph {graph!r} has no tensor {name!r}")


def _f(name: str, *shape: Dim) -> TensorSpec:
    return TensorSpec(name=name, dtype="float32", shape=tuple(shape))


def appearance_name(level: int) -> str:
    return f"appearance_{level}"


def cross_key_name(level: int) -> str:
    return f"cross_key_{level}"


def cross_value_name(level: int) -> str:
    return f"cross_value_{level}"


def _avatar_tensors() -> tuple[TensorSpec, ...]:
    """Per-avatar tensors the frame renderer needs for every frame (batch 1, broadcast).

    The coarse levels enter only through their precomputed cross-attention keys/values; the
    fine levels (>= 128 px) are resampled directly, so only they ship as appearance maps.
    """
    specs = [_f("id_latent", 1, ID_DIM)]
    specs += [
        _f(appearance_name(i), 1, c, s, s)
        for i, (c, s) in enumerate(APPEARANCE_LEVELS)
        if i >= COARSE_LEVELS
    ]
    for i, (c, s) in enumerate(APPEARANCE_LEVELS[:COARSE_LEVELS]):
        specs.append(_f(cross_key_name(i), 1, s * s, c))
        specs.append(_f(cross_value_name(i), 1, s * s, c))
    return tuple(specs)


AVATAR_TENSORS = _avatar_tensors()

AUDIO_ENCODER = GraphSpec(
    name="audio_encoder",
    inputs=(_f("audio", "batch", "samples"),),
    outputs=(_f("features", "batch", "frames", AUDIO_FEATURE_DIM),),
    doc=(
        "wav2vec2 (IMTalker variant). `audio`: 16 kHz, normalised to zero mean / unit variance, "
        "length a multiple of 640 samples; frames = samples / 640 (conv features are linearly "
        "interpolated to that count before the feature projection)."
    ),
)

CONDITIONER = GraphSpec(
    name="conditioner",
    inputs=(
        _f("audio_features", "batch", "frames", AUDIO_FEATURE_DIM),
        _f("gaze", "batch", "frames", 2),
        _f("pose", "batch", "frames", 3),
        _f("cam", "batch", "frames", 3),
    ),
    outputs=(
        _f("audio_cond", "batch", "frames", COND_DIM),
        _f("gaze_cond", "batch", "frames", COND_DIM),
        _f("pose_cond", "batch", "frames", COND_DIM),
        _f("cam_cond", "batch", "frames", COND_DIM),
    ),
    doc=(
        "The generator's condition projections (Linear+LayerNorm+SiLU). A condition the user "
        "leaves 'natural' is not projected: the runtime passes zeros in its place."
    ),
)

VELOCITY = GraphSpec(
    name="velocity",
    inputs=(
        _f("t", "batch"),
        _f("x", "batch", CLIP_FRAMES, MOTION_DIM),
        _f("prev_x", "batch", PREV_FRAMES, MOTION_DIM),
        _f("ref_x", "batch", MOTION_DIM),
        _f("audio_cond", "batch", CLIP_FRAMES, COND_DIM),
        _f("prev_audio_cond", "batch", PREV_FRAMES, COND_DIM),
        _f("gaze_cond", "batch", CLIP_FRAMES, COND_DIM),
        _f("prev_gaze_cond", "batch", PREV_FRAMES, COND_DIM),
        _f("pose_cond", "batch", CLIP_FRAMES, COND_DIM),
        _f("prev_pose_cond", "batch", PREV_FRAMES, COND_DIM),
        _f("cam_cond", "batch", CLIP_FRAMES, COND_DIM),
        _f("prev_cam_cond", "batch", PREV_FRAMES, COND_DIM),
        _f("cfg_scale", 1),
    ),
    outputs=(_f("velocity", "batch", CLIP_FRAMES, MOTION_DIM),),
    doc=(
        "One flow-matching velocity evaluation of the current 50 frames, audio classifier-free "
        "guidance folded in: uncond + cfg_scale * (cond - uncond), uncond = zeroed audio."
    ),
)


def source_size(version: ModelVersion) -> int:
    """Side of the square source and driving images `version`'s encoders read."""
    return version.source_size


def avatar_encoder_spec(version: ModelVersion) -> GraphSpec:
    size = source_size(version)
    return GraphSpec(
        name="avatar_encoder",
        inputs=(_f("source", 1, 3, size, size),),
        outputs=(_f("source_motion", 1, MOTION_DIM), *AVATAR_TENSORS),
        doc=(
            f"Source image (RGB in [0, 1], {size}x{size}) -> its motion latent and every "
            "per-avatar tensor the frame renderer needs, computed once per avatar."
        ),
    )


RENDERER = GraphSpec(
    name="renderer",
    inputs=(_f("motion", "batch", MOTION_DIM), *AVATAR_TENSORS),
    outputs=(_f("frames", "batch", 3, FRAME_SIZE, FRAME_SIZE),),
    doc=(
        "Motion latents (not yet identity-adapted) against one avatar's cached tensors -> "
        "RGB frames in [0, 1], 512x512."
    ),
)


def motion_encoder_spec(version: ModelVersion) -> GraphSpec:
    size = source_size(version)
    return GraphSpec(
        name="motion_encoder",
        inputs=(_f("image", "batch", 3, size, size),),
        outputs=(_f("motion", "batch", MOTION_DIM),),
        doc=f"Driving face crops (RGB in [0, 1], {size}x{size}) -> motion latents (video mode).",
    )


def graphs(version: ModelVersion) -> tuple[GraphSpec, ...]:
    """Every graph of `version`, in export order."""
    return (
        AUDIO_ENCODER,
        CONDITIONER,
        VELOCITY,
        avatar_encoder_spec(version),
        RENDERER,
        motion_encoder_spec(version),
    )


def graph(name: str, version: ModelVersion = V1) -> GraphSpec:
    for spec in graphs(version):
        if spec.name == name:
            return spec
    raise KeyError(f"no graph named {name!r}")


AVATAR_ENCODER = avatar_encoder_spec(V1)
MOTION_ENCODER = motion_encoder_spec(V1)
GRAPHS: tuple[GraphSpec, ...] = graphs(V1)
"""v1's graphs; the names (and every version-independent shape) are the same for all versions."""
