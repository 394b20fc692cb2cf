"""Which parts of a graph keep fp32 when OpenVINO runs the rest in bf16 (data; no imports, any
thread). Chosen by measured sensitivity: tests/bench/bench_mixed_precision.py puts one stage at
a time back to fp32 on the golden inputs of both model versions and records the error of the
frames against ONNX Runtime fp32 (results in tests/bench/results/mixed_precision.md).

The renderer's stages follow its modules: ``motion`` is everything before the synthesis
network (motion decoding, the cross-attention to the avatar and its top-1 picks, whose argmax
flips under bf16 and moves whole patches), then per pyramid level the up-convolution with its
fusing residual block (``up<i>``) and the self-attention (``at<i>``), then the RGB head.
"""

from __future__ import annotations

LEVELS = 5
"""Pyramid levels of the synthesis network (v1 and v2 alike)."""


def renderer_stages() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(stage, op-name prefixes) in graph order."""
    stages: list[tuple[str, tuple[str, ...]]] = [("motion", ())]
    for level in range(LEVELS):
        stages.append(
            (
                f"up{level}",
                (
                    f"/frame_decoder/upconv_blocks.{level}/",
                    f"/frame_decoder/resblocks.{level}/",
                ),
            )
        )
        stages.append((f"at{level}", (f"/frame_decoder/transformer_blocks.{level}/",)))
    stages.append(("head", ("/frame_decoder/final_conv",)))
    return tuple(stages)


RENDERER_FP32 = {
    "v1": frozenset({"motion", "up2", "up3"}),
    "v2": frozenset({"motion", "up3"}),
}
"""Per model version, the renderer's stages that keep fp32 in bf16-mixed (the rest bf16). On
the golden inputs (results/mixed_precision.md): with only ``motion`` in fp32 the frames are
4.1e-3 (v1) and 2.2e-3 (v2) mean |d| from fp32, over the 2e-3 limit; ``up3`` (the 128x128
level) brings v2 to 1.6e-3 and v1 to 2.3e-3, v1 also needs ``up2`` (1.4e-3)."""
CAUTIOUS = frozenset().union(*RENDERER_FP32.values())
"""For a graph whose version is not known: every stage either version keeps in fp32."""


def renderer_fp32(version: str | None) -> frozenset[str]:
    """The stages `version` keeps in fp32 (`CAUTIOUS` for an unknown or unnamed version)."""
    return RENDERER_FP32.get(version or "", CAUTIOUS)
