"""Criteria read from the weights alone: L1 and L2 magnitude, BatchNorm scale."""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from steps.compression.criteria import Calibration, Importance


class _GroupMagnitude(Importance):
    """sum |w|^p over the unit's weights in each coupled layer (a head: its q, k, v rows and proj columns),
    averaged over the layers: Torch-Pruning's group magnitude (Li et al. 2017, "Pruning Filters for
    Efficient ConvNets", for p = 1)."""

    p: int

    def __init__(self, name: str, normalizer: str | None = None) -> None:
        super().__init__(name, normalizer)
        self._scores = tp.importance.GroupMagnitudeImportance(p=self.p, normalizer=normalizer)

    def __call__(self, group) -> torch.Tensor:
        return self._scores(group)


class L1(_GroupMagnitude):
    p = 1


class L2(_GroupMagnitude):
    p = 2


class BNScale(Importance):
    """Network slimming (Liu et al. 2017, "Learning Efficient Convolutional Networks through Network
    Slimming"): |gamma| of the group's BatchNorm; L1 magnitude where a group has none.

    Torch-Pruning's BNScaleImportance returns None for a group without BN and the pruner then skips it, so
    the MLP head of a CNN/ResNet would keep its width; falling back to L1 keeps the promise that every
    layer shrinks.
    """

    def __init__(self, name: str, normalizer: str | None = None) -> None:
        super().__init__(name, normalizer)
        self._bn = tp.importance.BNScaleImportance(normalizer=normalizer)
        self._l1 = tp.importance.GroupMagnitudeImportance(p=1, normalizer=normalizer)

    def check(self, model: nn.Module, calibration: Calibration | None) -> None:
        super().check(model, calibration)
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            raise ValueError(f"importance {self.name!r} ranks channels by BatchNorm scale but the model has no "
                             "BatchNorm")

    def __call__(self, group) -> torch.Tensor:
        scores = self._bn(group)
        return scores if scores is not None else self._l1(group)
