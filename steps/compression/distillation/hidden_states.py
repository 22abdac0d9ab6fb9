"""Hidden states: Jiao et al. 2020, "TinyBERT: Distilling BERT for Natural Language Understanding"."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from steps.compression.distillation.term import Term


class HiddenStates(Term):
    """loss = MSE(H_s W, H_t)

    H_s (..., d_s) and H_t (..., d_t) are hidden states of paired layers (a family's
    `hidden_states` hook names them per block; from a teacher without blocks, the stage pairs the
    pooled features both classifier heads read), W a learned d_s x d_t matrix (a Linear without
    bias, as in the paper), the identity when the widths are equal. W belongs to this module:
    optimise it with the student. All dimensions but the last must match (batch and tokens). Zero
    when the states are equal and the widths too; the teacher's states are detached.

    With a token mask m (B, N) (a text's attention mask), padding positions are left out:
    loss = sum_{b,n} m_bn ||H_s W - H_t||^2_bn / (d_t * sum_{b,n} m_bn), the MSE over real tokens
    (a padding position's state is whatever the model computes there, nothing to learn from).
    """

    reads = "hidden_states"
    masks_tokens = True

    def __init__(self, student_dim: int, teacher_dim: int, where: str = "hidden states") -> None:
        super().__init__()
        self.student_dim, self.teacher_dim, self.where = student_dim, teacher_dim, where
        self.project = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim, bias=False)

    @classmethod
    def from_shapes(cls, student: Sequence[int], teacher: Sequence[int], *, where: str) -> HiddenStates:
        s, t = tuple(student), tuple(teacher)
        if len(s) < 2 or s[:-1] != t[:-1]:
            raise ValueError(f"{where}: shapes {s} and {t} must agree in every dim but the last")
        return cls(s[-1], t[-1], where)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if student.shape[-1] != self.student_dim or teacher.shape[-1] != self.teacher_dim:
            raise ValueError(f"{self.where}: got widths {student.shape[-1]} (student) and {teacher.shape[-1]} "
                             f"(teacher) in the last dim; this loss was built for {self.student_dim} and "
                             f"{self.teacher_dim}")
        if student.shape[:-1] != teacher.shape[:-1]:
            raise ValueError(f"{self.where}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} "
                             f"must agree in every dim but the last (batch, tokens)")
        if mask is None:
            return F.mse_loss(self.project(student), teacher.detach())
        if tuple(mask.shape) != tuple(student.shape[:-1]):
            raise ValueError(f"{self.where}: token mask {tuple(mask.shape)} does not match hidden states "
                             f"{tuple(student.shape)} (expected (batch, tokens))")
        squared = (self.project(student) - teacher.detach()).square().sum(-1)
        weights = mask.to(squared.dtype)
        return (squared * weights).sum() / (weights.sum().clamp_min(1) * self.teacher_dim)
