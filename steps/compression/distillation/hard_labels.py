"""Hard labels: the student's cross-entropy on the true labels (the second half of Hinton et al. 2015's loss)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from steps.compression.distillation.term import Term
from steps.compression.training import next_token


class HardLabels(Term):
    """loss = CE(student logits, y), averaged over the batch. With weight 1 - alpha beside `SoftTargets`
    at weight alpha, the sum is Hinton et al.'s alpha * T^2 * KL + (1 - alpha) * CE."""

    reads = "labels"

    def forward(self, student: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """On a language model's blocks (logits (B, T, V), labels the block's ids), the next-token loss."""
        return F.cross_entropy(*next_token(student, labels) if student.dim() == 3 else (student, labels))
