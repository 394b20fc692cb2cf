"""The int8 renderer's calibration and validation inputs, made from real data through the app's
own fp32 graphs, and the int8 renderer made from them when bench needs it (the caller's thread:
`imtalker-cam bench`'s main thread).

Each portrait of the recipe (`runtime.model.compile.quantize.CalibrationRecipe`) is prepared as
for a render (`prepare_avatar`: face found and cropped), encoded by the avatar encoder, and
driven by a speech clip through the audio encoder, the conditioner and the sampler
(`OfflineRenderer`, ONNX Runtime fp32 on the CPU, the fixed noise of a render); the renderer
inputs are the avatar's tensors with single frames of that motion, spread evenly over the clip.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from runtime.engine.motion_sampler import RawConditions
from runtime.engine.offline import AudioRenderSettings, OfflineRenderer
from runtime.media.audio_file import load_audio
from runtime.media.face_crop import NoFaceFoundError, prepare_avatar
from runtime.model import contract
from runtime.model.compile.quantize import (
    CalibrationRecipe,
    CalibrationSet,
    Int8Damaged,
    Int8Missing,
    QuantizeSettings,
    build_int8,
    default_recipe,
    find_int8,
)
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import SessionOptions

__all__ = ["calibration_set", "ensure_int8"]

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]


def _spread(total: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over `total` frames (repeats when too few)."""
    return [int(i) for i in np.linspace(0, total - 1, count).round()]


def calibration_set(graphs: Path, recipe: CalibrationRecipe, *, threads: int = 0) -> CalibrationSet:
    """Renderer inputs for `recipe` through the fp32 graphs in `graphs` (see the module
    docstring); calibration and validation frames are different frames of the same motion."""
    names = [
        contract.AVATAR_ENCODER.name,
        contract.AUDIO_ENCODER.name,
        contract.CONDITIONER.name,
        contract.VELOCITY.name,
        contract.RENDERER.name,
    ]
    models = open_model_set(graphs, options=SessionOptions(intra_op_threads=threads), names=names)
    limit = int(recipe.speech_seconds * contract.SAMPLE_RATE)
    speech = [load_audio(path)[:limit] for path in recipe.speech]
    per_portrait = recipe.calibration_frames + recipe.validation_frames
    calibration: list[dict[str, Array]] = []
    validation: list[dict[str, Array]] = []
    for i, portrait in enumerate(recipe.portraits):
        try:
            avatar = prepare_avatar(portrait, crop=True)
        except NoFaceFoundError:
            avatar = prepare_avatar(portrait, crop=False)
        renderer = OfflineRenderer(models, avatar.image_at(models.source_size))
        motion = renderer.motion_from_audio(
            speech[i % len(speech)],
            conditions=RawConditions(),
            settings=AudioRenderSettings(seed=recipe.seed),
        )
        logger.info(
            "calibration: %s driven by %s (%d frames)",
            portrait.name, recipe.speech[i % len(recipe.speech)].name, motion.shape[0],
        )  # fmt: skip
        # Every step-th frame validates, the others calibrate: both spread over the clip.
        step = per_portrait // recipe.validation_frames
        held_out = set(range(step - 1, per_portrait, step)[: recipe.validation_frames])
        for j, frame in enumerate(_spread(motion.shape[0], per_portrait)):
            sample = {**renderer.avatar, "motion": motion[frame : frame + 1].copy()}
            (validation if j in held_out else calibration).append(sample)
    return CalibrationSet(calibration=calibration, validation=validation)


def ensure_int8(
    graphs: Path,
    *,
    recipe: CalibrationRecipe | None = None,
    settings: QuantizeSettings | None = None,
    threads: int = 0,
) -> Path:
    """The int8 renderer's IR of `graphs`, made first when missing or damaged (minutes at full size:
    said in the log, with the quantization's progress). Raises `Int8Error` subclasses."""
    recipe = recipe or default_recipe()
    try:
        return find_int8(graphs, recipe=recipe, settings=settings)
    except Int8Missing:
        pass
    except Int8Damaged as exc:
        logger.warning("making the int8 renderer again: %s", exc)
    logger.info(
        "making the int8 renderer: NNCF post-training quantization calibrated on %d portraits "
        "and %d speech clips (a few minutes at full size)",
        len(recipe.portraits), len(recipe.speech),
    )  # fmt: skip
    samples = calibration_set(graphs, recipe, threads=threads)
    build_int8(graphs, samples, recipe=recipe, settings=settings)
    return find_int8(graphs, recipe=recipe, settings=settings)
