"""The published IMTalker model versions, as data, and how to tell them apart from checkpoint keys.

Dependency-free on purpose (standard library only): the exporter (`models/`), the ONNX contract
and the runtime all read the same descriptions. Adding a version means adding one `ModelVersion`
here (plus its golden fixtures); the PyTorch modules, the exporter and the contract take every
version-dependent number from it.

Detection works on key sets (no torch): `detect_renderer_version` / `detect_generator_version`
apply the marker rules of `shared/golden/v2/README.md`; `closest_version` says which version an
unrecognised key set resembles most, given each version's full expected key set (which only the
model code knows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

PositionScheme = Literal["sinusoidal_banded", "rope"]

RENDERER_CHECKPOINT_PREFIX = "gen."
"""Prefix of the renderer's keys inside the published `renderer.ckpt`."""
GENERATOR_CHECKPOINT_PREFIX = "model."
"""Prefix of the generator's keys inside the published `generator.ckpt`."""


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    """Everything that differs between published IMTalker versions.

    Marker keys are module keys (no checkpoint prefix): a state dict is this version when it
    holds every `*_present` key (or a key under it, for names ending in ".") and none of the
    `*_absent` ones.
    """

    name: str
    source_size: int
    """Side of the square RGB input of the identity and motion encoders (source and driving)."""
    identity_extra_down_blocks: int
    """Extra `DownConvResBlock`s right after the identity encoder's stem (`down_block_<i>`),
    each halving the resolution so the appearance pyramid keeps its sides."""
    position_scheme: PositionScheme
    """"sinusoidal_banded": absolute sinusoid table + banded attention mask;
    "rope": rotary embeddings on q and k, full attention."""
    rope_base: float | None
    """RoPE frequency base (None without RoPE)."""
    default_cfg: float
    """Audio classifier-free guidance scale of the upstream demo."""
    renderer_markers_present: tuple[str, ...]
    renderer_markers_absent: tuple[str, ...]
    generator_markers_present: tuple[str, ...]
    generator_markers_absent: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.position_scheme == "rope" and self.rope_base is None:
            raise ValueError(f"{self.name}: RoPE needs rope_base")
        if self.source_size % (2**self.identity_extra_down_blocks):
            raise ValueError(f"{self.name}: source_size must halve per extra down block")

    def __str__(self) -> str:
        return self.name


# The first public release.
V1 = ModelVersion(
    name="v1",
    source_size=256,
    identity_extra_down_blocks=0,
    position_scheme="sinusoidal_banded",
    rope_base=None,
    default_cfg=3.0,
    renderer_markers_present=("dense_feature_encoder.down_blocks.",),
    renderer_markers_absent=("dense_feature_encoder.down_block_0.",),
    generator_markers_present=("fmt.pos_embed",),
    generator_markers_absent=("fmt.rotary_emb.inv_freq",),
)

# The 2025-12-16 upstream update ("update models").
V2 = ModelVersion(
    name="v2",
    source_size=512,
    identity_extra_down_blocks=1,
    position_scheme="rope",
    rope_base=10_000.0,
    default_cfg=2.0,
    renderer_markers_present=("dense_feature_encoder.down_block_0.",),
    renderer_markers_absent=(),
    generator_markers_present=("fmt.rotary_emb.inv_freq",),
    generator_markers_absent=("fmt.pos_embed",),
)

VERSIONS: Mapping[str, ModelVersion] = {v.name: v for v in (V1, V2)}
"""Every known version by name, oldest first."""

DEFAULT_VERSION = V2
"""What the model hub serves now."""


def version(name: str) -> ModelVersion:
    """The version called `name` ("v1", "v2"); a KeyError names the known ones."""
    try:
        return VERSIONS[name]
    except KeyError:
        raise KeyError(f"unknown model version {name!r} (known: {', '.join(VERSIONS)})") from None


def _module_keys(keys: Iterable[str], prefix: str) -> frozenset[str]:
    """Keys with the checkpoint prefix removed where present (both spellings are accepted)."""
    return frozenset(k.removeprefix(prefix) for k in keys)


def _has(keys: frozenset[str], marker: str) -> bool:
    if marker.endswith("."):
        return any(k.startswith(marker) for k in keys)
    return marker in keys


def _matches(keys: frozenset[str], present: tuple[str, ...], absent: tuple[str, ...]) -> bool:
    return all(_has(keys, m) for m in present) and not any(_has(keys, m) for m in absent)


def detect_renderer_version(keys: Iterable[str]) -> ModelVersion | None:
    """The version whose renderer markers `keys` carry (with or without "gen."), else None."""
    found = _module_keys(keys, RENDERER_CHECKPOINT_PREFIX)
    hits = [
        v
        for v in VERSIONS.values()
        if _matches(found, v.renderer_markers_present, v.renderer_markers_absent)
    ]
    return hits[0] if len(hits) == 1 else None


def detect_generator_version(keys: Iterable[str]) -> ModelVersion | None:
    """The version whose generator markers `keys` carry (with or without "model."), else None."""
    found = _module_keys(keys, GENERATOR_CHECKPOINT_PREFIX)
    hits = [
        v
        for v in VERSIONS.values()
        if _matches(found, v.generator_markers_present, v.generator_markers_absent)
    ]
    return hits[0] if len(hits) == 1 else None


@dataclass(frozen=True, kw_only=True)
class Resemblance:
    """How far a key set is from one version's expected keys."""

    version: ModelVersion
    missing: tuple[str, ...]
    """Expected keys the set lacks (sorted)."""
    unexpected: tuple[str, ...]
    """Keys of the set the version does not have (sorted)."""

    @property
    def differing(self) -> int:
        return len(self.missing) + len(self.unexpected)

    @property
    def fits(self) -> bool:
        return self.differing == 0


def closest_version(
    keys: Iterable[str],
    expected: Mapping[str, frozenset[str]],
    *,
    optional: Mapping[str, frozenset[str]] | None = None,
) -> Resemblance:
    """The version (by name in `expected`: version name -> its module keys) that `keys` differ
    least from; ties go to the newer version. `optional` keys (computed buffers a checkpoint may
    omit) do not count as missing."""
    if not expected:
        raise ValueError("no versions to compare with")
    have = frozenset(keys)
    best: Resemblance | None = None
    for name in reversed(tuple(VERSIONS)):  # newest first, so it wins ties
        if name not in expected:
            continue
        want = expected[name]
        may_lack = (optional or {}).get(name, frozenset())
        candidate = Resemblance(
            version=VERSIONS[name],
            missing=tuple(sorted(want - have - may_lack)),
            unexpected=tuple(sorted(have - want)),
        )
        if best is None or candidate.differing < best.differing:
            best = candidate
    if best is None:
        raise ValueError(f"no known version among {sorted(expected)}")
    return best
