"""Attention transfer: Zagoruyko & Komodakis 2017, "Paying More Attention to Attention"."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from steps.compression.distillation.spatial import match_spatial
from steps.compression.distillation.term import Term


class AttentionTransfer(Term):
    """Activation-based attention transfer.

    Q(A) = vec(sum_c |A_c|^p), a (B, H*W) spatial attention map per sample;
    loss = mean_b || Q_s / ||Q_s||_2 - Q_t / ||Q_t||_2 ||_2

    The norm of the difference is the plain (not squared) L2 norm: the paper's eq. 2 with its
    p-norm set to 2, as in its experiments, without the beta/2 factor (give that as the weight).
    Channels are summed away, so student and teacher widths may differ; where spatial sizes differ
    the larger map is adaptive-average-pooled to the smaller before normalising. The loss is
    invariant to positive scaling of either activation. Teacher activations are detached.
    """

    reads = "layers"

    def __init__(self, p: float = 2, where: str = "attention transfer") -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"p must be > 0, got {p}")
        self.p, self.where = p, where

    @classmethod
    def from_shapes(cls, student: Sequence[int], teacher: Sequence[int], *, where: str) -> AttentionTransfer:
        if len(student) != 4 or len(teacher) != 4:
            raise ValueError(f"{where}: shapes {tuple(student)} and {tuple(teacher)} must both be 4-D (B, C, H, W)")
        return cls(where=where)

    def attention(self, a: torch.Tensor) -> torch.Tensor:
        """sum_c |A_c|^p: (B, C, H, W) -> (B, H, W), unnormalised."""
        if a.ndim != 4:
            raise ValueError(f"{self.where}: attention transfer needs 4-D (B, C, H, W) activations, got shape "
                             f"{tuple(a.shape)}")
        return a.abs().pow(self.p).sum(dim=1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        q_s, q_t = match_spatial(self.attention(student), self.attention(teacher.detach()))
        q_s, q_t = F.normalize(q_s.flatten(1), dim=1), F.normalize(q_t.flatten(1), dim=1)
        return torch.linalg.vector_norm(q_s - q_t, ord=2, dim=1).mean()
