"""Unstructured magnitude pruning on Linear and Conv2d weights.

Built on torch.nn.utils.prune: while fine-tuning, masks live as
`weight_orig * weight_mask` so pruned weights stay zero; `fold()` makes them
permanent (no `_orig`/`_mask` leftovers) before the model is saved.
Each call raises sparsity to an exact target: the number of weights to
remove is computed from what is already zero, and torch's pruning containers
choose them among the weights still alive.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune

from steps.compression.prune_method import PruneMethod
from steps.compression.training import Split

PRUNABLE = (nn.Linear, nn.Conv2d)


def prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]


def _zeros(module: nn.Module) -> int:
    mask = getattr(module, "weight_mask", None)
    return int((mask == 0).sum()) if mask is not None else int((module.weight == 0).sum())


def prune_global(model: nn.Module, sparsity: float) -> None:
    """One threshold over all prunable weights: small layers may lose more."""
    layers = [m for _, m in prunable(model)]
    total = sum(m.weight.numel() for m in layers)
    extra = round(sparsity * total) - sum(_zeros(m) for m in layers)
    if extra > 0:
        prune.global_unstructured([(m, "weight") for m in layers], prune.L1Unstructured, amount=extra)


def prune_per_layer(model: nn.Module, sparsity: float) -> None:
    """The same sparsity in every prunable layer."""
    for _, m in prunable(model):
        extra = round(sparsity * m.weight.numel()) - _zeros(m)
        if extra > 0:
            prune.l1_unstructured(m, "weight", amount=extra)


SCOPES: dict[str, Callable[[nn.Module, float], None]] = {"global": prune_global, "layer": prune_per_layer}


def prune_magnitude(model: nn.Module, sparsity: float, scope: str) -> None:
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    try:
        SCOPES[scope](model, sparsity)
    except KeyError:
        raise ValueError(f"unknown pruning scope {scope!r}; choose one of {sorted(SCOPES)}") from None


def fold(model: nn.Module) -> nn.Module:
    """Make masks permanent: plain `weight` tensors with zeros, no hooks."""
    for _, m in prunable(model):
        if prune.is_pruned(m):
            prune.remove(m, "weight")
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over all prunable layers."""
    layers = [m for _, m in prunable(model)]
    total = sum(m.weight.numel() for m in layers)
    with torch.no_grad():
        return sum(int((m.weight == 0).sum()) for m in layers) / total


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    with torch.no_grad():
        return {name: float((m.weight == 0).float().mean()) for name, m in prunable(model)}


class MagnitudePruning(PruneMethod):
    """prune.method magnitude: zero single weights (prune.scope: one global threshold, or per layer); masks
    hold them at zero while fine-tuning and are folded into the weights before saving."""

    def __init__(self, model: nn.Module, cfg) -> None:
        super().__init__(model, cfg)
        if getattr(cfg, "n_m", None) is not None:
            raise ValueError(f"prune.n_m {cfg.n_m!r} prunes a causal language model's decoder n:m (data.task "
                             "causal_lm); this model is pruned by single weights at prune.target_sparsity: remove it")

    def prune_round(self, model: nn.Module, round_no: int, train: Split, device: torch.device) -> None:
        prune_magnitude(model, self.targets()[round_no - 1], self.cfg.scope)

    def sparsity(self, model: nn.Module) -> float:
        """The fraction of weights that are zero."""
        return sparsity(model)

    def finish(self, model: nn.Module) -> None:
        fold(model)
