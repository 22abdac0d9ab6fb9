"""Rebuilding a structurally pruned model from its weights: each layer takes the stored tensors' shapes.

A channel-pruned model keeps its spec but has narrower layers; checkpoint.load builds the spec's model
and then this replaces each layer whose stored tensors are smaller with one of the stored size, so no
pruning history needs saving. Only the layer types in `RESIZABLE` can be rebuilt so, which is also what
structured pruning of a user's model is limited to (custom's `refuse_unprunable`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _fresh_conv(m: nn.Conv2d, weight: torch.Tensor) -> nn.Conv2d:
    return nn.Conv2d(weight.shape[1] * m.groups, weight.shape[0], m.kernel_size, stride=m.stride,
                     padding=m.padding, dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
                     padding_mode=m.padding_mode)


def _fresh_linear(m: nn.Linear, weight: torch.Tensor) -> nn.Linear:
    return nn.Linear(weight.shape[1], weight.shape[0], bias=m.bias is not None)


def _fresh_batchnorm(m: nn.modules.batchnorm._BatchNorm, sized: torch.Tensor) -> nn.Module:
    return type(m)(sized.shape[0], eps=m.eps, momentum=m.momentum, affine=m.affine,
                   track_running_stats=m.track_running_stats)


RESIZABLE: dict[type, Callable[[Any, torch.Tensor], nn.Module]] = {
    # layer type -> a fresh layer shaped like the stored tensor, other settings copied
    nn.Conv2d: _fresh_conv,
    nn.Linear: _fresh_linear,
    nn.BatchNorm1d: _fresh_batchnorm,
    nn.BatchNorm2d: _fresh_batchnorm,
}


def _sizing(name: str, m: nn.Module, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(stored, built) tensor pair that sizes the layer: weight, or running_mean for a BN without affine."""
    for attr in ("weight", "running_mean"):
        stored, built = state.get(f"{name}.{attr}"), getattr(m, attr, None)
        if stored is not None and built is not None:
            return stored, built
    return None


def shrink_to(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Replace each layer whose stored tensors are smaller than built with one of the stored size.

    Only shrinking is allowed: structured pruning never widens a layer, and a
    wider tensor means the weights belong to another spec (refused by the
    strict load that follows). Returns whether anything was replaced.
    """
    resized = False
    for name, m in list(model.named_modules()):
        pair = _sizing(name, m, state) if type(m) in RESIZABLE else None
        if pair is None or pair[0].shape == pair[1].shape:
            continue
        stored, built = pair
        if stored.dim() != built.dim() or any(s > b for s, b in zip(stored.shape, built.shape, strict=True)):
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, RESIZABLE[type(m)](m, stored))
        resized = True
    return resized
