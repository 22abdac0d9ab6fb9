"""First-order Taylor importance: what removing a unit would change in the loss."""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from steps.compression.criteria import Calibration, Importance
from steps.compression.training import forward


def loss_gradients(model: nn.Module, calibration: Calibration) -> None:
    """Cross-entropy gradients on one batch, in eval mode so BN running statistics stay as they are.

    They are left in `.grad` for the scores: the caller clears them after scoring (they are not training
    gradients)."""
    x, y = calibration
    was_training = model.training
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            F.cross_entropy(forward(model, x), y).backward()
    finally:
        model.train(was_training)


class Taylor(Importance):
    """Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning": sum |w * dL/dw| over the
    unit's weights in each coupled layer, averaged over the layers, cross-entropy on the calibration batch."""

    needs_calibration = True

    def __init__(self, name: str, normalizer: str | None = None) -> None:
        super().__init__(name, normalizer)
        self._scores = tp.importance.GroupTaylorImportance(normalizer=normalizer)

    def prepare(self, model: nn.Module, calibration: Calibration | None) -> Taylor:
        loss_gradients(model, calibration)
        return self

    def __call__(self, group) -> torch.Tensor:
        return self._scores(group)
