"""Strict state-dict loading that reports every problem at once.

A module's expected keys are its `state_dict()` keys plus its non-persistent buffers. Buffers the
module computes itself ("computed": non-persistent buffers, `num_batches_tracked`, and the names a
caller declares, such as blur kernels, masks, position indices or tables) may be absent from the
file and then keep their computed value; when present they are loaded like everything else. A
missing parameter or BatchNorm running statistic is always an error.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models.checkpoint.errors import StateDictMismatchError

_LEARNED_BUFFER_SUFFIXES = ("running_mean", "running_var")


def _is_batch_counter(name: str) -> bool:
    return name.rpartition(".")[2] == "num_batches_tracked"


def computed_buffer_names(
    module: nn.Module, computed_buffers: frozenset[str] | None = None
) -> frozenset[str]:
    """Names that may be absent from a checkpoint: declared, non-persistent or batch counters."""
    buffers = {name for name, _ in module.named_buffers()}
    declared = computed_buffers or frozenset()
    bad = sorted(
        name
        for name in declared
        if name not in buffers or name.rpartition(".")[2] in _LEARNED_BUFFER_SUFFIXES
    )
    if bad:
        raise ValueError(
            f"computed_buffers must name non-learned buffers of {type(module).__name__}: {bad}"
        )
    persistent = set(module.state_dict().keys())
    automatic = {name for name in buffers if name not in persistent or _is_batch_counter(name)}
    return frozenset(declared | automatic)


def check_fits(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    computed_buffers: frozenset[str] | None = None,
) -> None:
    """Raise StateDictMismatchError listing every key of `state_dict` that does not fit
    `module` (missing, unexpected, mis-shaped); loads nothing, so `module` may live on the
    meta device."""
    computed = computed_buffer_names(module, computed_buffers)
    persistent: dict[str, torch.Tensor] = dict(module.state_dict(keep_vars=True))
    non_persistent = {n: b for n, b in module.named_buffers() if n not in persistent}
    targets = {**persistent, **non_persistent}
    _raise_mismatch(module, state_dict, targets, computed)


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    computed_buffers: frozenset[str] | None = None,
) -> None:
    """Copy `state_dict` into `module`, or raise one error listing every mismatch.

    Nothing is loaded unless every key fits: no missing learned weights, no unexpected keys,
    no shape differences.
    """
    computed = computed_buffer_names(module, computed_buffers)
    persistent: dict[str, torch.Tensor] = dict(module.state_dict(keep_vars=True))
    non_persistent = {n: b for n, b in module.named_buffers() if n not in persistent}
    targets = {**persistent, **non_persistent}
    _raise_mismatch(module, state_dict, targets, computed)

    # load_state_dict (not raw copies) so modules with their own loading hooks still work.
    result = module.load_state_dict(
        {k: v for k, v in state_dict.items() if k in persistent}, strict=False
    )
    still_missing = tuple(k for k in result.missing_keys if k not in computed)
    if still_missing or result.unexpected_keys:
        raise StateDictMismatchError(
            type(module).__name__,
            missing=still_missing,
            unexpected=tuple(result.unexpected_keys),
            mismatched=(),
        )
    with torch.no_grad():
        for name, buffer in non_persistent.items():
            if name in state_dict:
                buffer.copy_(state_dict[name])


def _raise_mismatch(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    computed: frozenset[str],
) -> None:
    missing = tuple(k for k in targets if k not in state_dict and k not in computed)
    unexpected = tuple(k for k in state_dict if k not in targets)
    mismatched = tuple(
        (k, tuple(v.shape), tuple(targets[k].shape))
        for k, v in state_dict.items()
        if k in targets and tuple(v.shape) != tuple(targets[k].shape)
    )
    if missing or unexpected or mismatched:
        raise StateDictMismatchError(
            type(module).__name__, missing=missing, unexpected=unexpected, mismatched=mismatched
        )
