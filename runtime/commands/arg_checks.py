"""Argument checks that `render` and `live` share, run before any work starts (the CLI's main
thread). Each raises `ValidationError` naming the option at fault."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from runtime.core import validate as v

#: (option, attribute, range) of the pose and gaze options.
POSE_OPTIONS = (
    ("--yaw", "yaw", v.YAW),
    ("--pitch", "pitch", v.PITCH),
    ("--roll", "roll", v.ROLL),
    ("--gaze-x", "gaze_x", v.GAZE_X),
    ("--gaze-y", "gaze_y", v.GAZE_Y),
)


def check_sampler(args: argparse.Namespace) -> None:
    """--cfg (when given), --nfe and --seed."""
    if args.cfg is not None:
        v.CFG.check(args.cfg, label="--cfg")
    v.NFE.check(args.nfe, label="--nfe")
    v.SEED.check(args.seed, label="--seed")


def check_pose(args: argparse.Namespace) -> None:
    """The pose and gaze options that were given."""
    for option, attr, rng in POSE_OPTIONS:
        value = getattr(args, attr)
        if value is not None:
            rng.check(value, label=option)


def check_files(
    args: argparse.Namespace,
    inputs: Sequence[tuple[str, Path | None]],
    *,
    output: tuple[str, Path | None],
) -> None:
    """The input files that were given, the --graphs/--weights folders (read only), and the
    output MP4 when given: never one of the inputs, replaced only with --overwrite."""
    for label, path in inputs:
        if path is not None:
            v.check_input_file(path, label=label)
    for label, folder in (("--graphs", args.graphs), ("--weights", args.weights)):
        if folder is not None:
            v.check_folder(folder, label=label, writable=False)
    out_label, out = output
    if out is not None:
        v.check_output_file(
            out, label=out_label, inputs=inputs, overwrite=args.overwrite, suffix=".mp4"
        )
