"""Knowledge-distillation losses."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class KDLoss(nn.Module):
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

    loss = alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, y)

    where p^T = softmax(logits / T). The T^2 factor keeps the soft-target
    gradients on the same scale as the hard-label ones when T changes.
    """

    def __init__(self, temperature: float, alpha: float) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.temperature = temperature
        self.alpha = alpha

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        soft = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                        reduction="batchmean", log_target=True)
        hard = F.cross_entropy(student, target)
        return self.alpha * t * t * soft + (1 - self.alpha) * hard
