"""Soft targets: Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from steps.compression.distillation.term import Term
from steps.compression.training import predicting


class SoftTargets(Term):
    """loss = T^2 * KL(p_teacher^T || p_student^T), averaged over the batch, where p^T = softmax(logits / T).

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label ones when T
    changes. It is applied with the weight (`coefficient`: weight * T * T, one float), so with weight
    alpha the objective computes alpha * T * T * KL exactly as Hinton's combined loss is usually written.
    """

    reads = "logits"

    def __init__(self, temperature: float) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def coefficient(self, weight: float) -> float:
        return weight * self.temperature * self.temperature

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """KL(p_teacher^T || p_student^T), without T^2 (see `coefficient`). A language model's logits per token
        (B, T, V) give one distribution per predicted token: the KL is averaged over the tokens its loss counts
        (every position but the last, `training.next_token`), Minitron's logit distillation."""
        if student.dim() == 3:
            student, teacher = predicting(student), predicting(teacher)
            teacher = _vocabulary_of(student, teacher)
        t = self.temperature
        return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                        reduction="batchmean", log_target=True)


def _vocabulary_of(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The teacher's logits over the student's vocabulary. A pretrained teacher's embedding may be padded past its
    tokenizer (Qwen2: 151,936 rows for 151,665 tokens) while a student built from a config has the tokenizer's
    size; the padding rows are never a target, so they are left out. A student with more entries is refused."""
    have, need = teacher.size(-1), student.size(-1)
    if have < need:
        raise ValueError(f"the student's logits have {need} entries per token, the teacher's {have}: a student "
                         "distilled from this teacher needs its vocabulary")
    return teacher[..., :need]
