"""FitNets hints: Romero et al. 2015, "FitNets: Hints for Thin Deep Nets"."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from steps.compression.distillation.spatial import match_spatial
from steps.compression.distillation.term import Term

_REGRESSORS: dict[int, Callable[[int, int], nn.Module]] = {
    4: lambda s, t: nn.Conv2d(s, t, kernel_size=1),  # (B, C, H, W) feature maps
    2: nn.Linear,  # (B, C) feature vectors
}


class FitNetsHint(Term):
    """loss = MSE(r(pool(F_s)), pool(F_t).detach())

    r is a learned regressor from the student's width to the teacher's: a 1x1 Conv2d for 4-D
    features (`ndim=4`), a Linear for 2-D ones (`ndim=2`), the identity when the widths are equal.
    Where spatial sizes differ, the larger map is adaptive-average-pooled to the smaller (FitNets
    instead sizes the regressor's kernel; pooling needs no extra weights). The regressor's
    parameters belong to this module: optimise them with the student (and move the term to the
    student's device), or r stays at its random initialisation. Only the student receives
    gradients; the teacher's features are detached.
    """

    reads = "layers"

    def __init__(self, student_channels: int, teacher_channels: int, ndim: int = 4, where: str = "hint") -> None:
        super().__init__()
        if ndim not in _REGRESSORS:
            raise ValueError(f"{where}: features must have ndim in {sorted(_REGRESSORS)}, got {ndim}")
        self.student_channels, self.teacher_channels, self.ndim = student_channels, teacher_channels, ndim
        self.where = where
        same = student_channels == teacher_channels
        self.regressor = nn.Identity() if same else _REGRESSORS[ndim](student_channels, teacher_channels)

    @classmethod
    def from_shapes(cls, student: Sequence[int], teacher: Sequence[int], *, where: str) -> FitNetsHint:
        """The hint for features of these shapes: both 2-D or both 4-D, widths in dim 1."""
        if len(student) != len(teacher) or len(student) not in _REGRESSORS:
            raise ValueError(f"{where}: shapes {tuple(student)} and {tuple(teacher)} must both have ndim in "
                             f"{sorted(_REGRESSORS)}")
        return cls(student[1], teacher[1], len(student), where)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        for who, x, channels in (("student", student, self.student_channels),
                                 ("teacher", teacher, self.teacher_channels)):
            if x.ndim != self.ndim or x.shape[1] != channels:
                raise ValueError(f"{self.where}: {who} features have shape {tuple(x.shape)}; this hint expects "
                                 f"{self.ndim}-D with {channels} channels in dim 1")
        teacher = teacher.detach()
        if self.ndim == 4:
            student, teacher = match_spatial(student, teacher)
        return F.mse_loss(self.regressor(student), teacher)
