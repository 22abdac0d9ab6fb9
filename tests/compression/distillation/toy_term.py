"""A term that is not shipped: the registry test plugs it in with one registry line."""

import torch

from steps.compression.distillation.term import Term


class MeanMatch(Term):
    """loss = (mean(F_s) - mean(F_t))^2, on named module pairs (a toy, no paper)."""

    reads = "layers"

    @classmethod
    def from_shapes(cls, student, teacher, *, where: str) -> "MeanMatch":
        return cls()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (student.mean() - teacher.detach().mean()) ** 2
