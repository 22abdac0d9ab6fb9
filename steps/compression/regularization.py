"""L1 sparsity regularisation: train so that pruning later removes little that matters.

Adding `coefficient * sum |x|` to the loss pushes the chosen tensors towards
exactly zero (the L1 subgradient does not fade near zero, unlike L2):

- "weights": every Linear/Conv2d weight (Han et al. 2015, "Learning both
  Weights and Connections for Efficient Neural Networks"): prepares
  unstructured magnitude pruning.
- "bn_scale": every BatchNorm scale gamma (Liu et al. 2017, "Learning
  Efficient Convolutional Networks through Network Slimming"): a channel
  whose gamma reaches zero outputs a constant, so structured pruning with
  the "bn_scale" importance removes it almost for free.
"""

from __future__ import annotations


import torch
from torch import nn

from steps.compression import choices


def weight_tensors(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def bn_scales(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]


TARGETS = choices.L1_TARGETS  # "weights" -> weight_tensors, "bn_scale" -> bn_scales


def penalised(model: nn.Module, target: str) -> list[torch.Tensor]:
    """The tensors `target` regularises; a model without any is an error, not a silent zero penalty."""
    tensors = TARGETS.resolve(target)(model)
    if not tensors:
        raise ValueError(f"L1 target {target!r}: {type(model).__name__} has no such parameters")
    return tensors


def l1_penalty(model: nn.Module, coefficient: float, target: str) -> torch.Tensor:
    """coefficient * sum |x| over the target tensors: add it to the training loss."""
    if coefficient < 0:
        raise ValueError(f"L1 coefficient must be >= 0, got {coefficient}")
    return coefficient * sum(t.abs().sum() for t in penalised(model, target))


def near_zero_fraction(model: nn.Module, target: str, threshold: float = 1e-3) -> float:
    """Fraction of target entries with |x| < threshold: how much sparsity training has produced."""
    with torch.no_grad():
        flat = torch.cat([t.detach().abs().flatten() for t in penalised(model, target)])
    return float((flat < threshold).float().mean())
