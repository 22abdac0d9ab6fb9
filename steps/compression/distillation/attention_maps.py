"""Attention maps: Wang et al. 2020, "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression
of Pre-Trained Transformers"."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from steps.compression.distillation.term import Term


class AttentionMaps(Term):
    """Self-attention distribution transfer.

    loss = 1 / (B * H * N) * sum_{b, h, i} KL(A^t_{b,h,i,:} || A^s_{b,h,i,:})

    where A = softmax(q k^T / sqrt(d_k)) is a (B, H, N, N) attention map whose rows are
    distributions over the N keys (a family's `attention_maps` hook names the module that outputs
    it, per block). With different head counts both maps are first averaged over heads (H = 1
    above): a row of the mean is still a distribution, and no head of one model corresponds to a
    head of the other (MiniLMv2 instead re-splits q, k, v into equal "relation heads"; that needs
    the queries and keys, not the maps). Student and teacher must see the same tokens (N): same
    patch grid and pooling. Zero when the maps are equal; the teacher's maps are detached.

    With a token mask m (B, N) (a text's attention mask), only the rows of real tokens count:
    loss = 1 / (H * sum_{b,i} m_bi) * sum_{b, h, i: m_bi = 1} KL(...). Padding keys need no masking: the
    model's own attention mask gives them probability 0 in both maps, and a key of teacher probability 0
    adds 0 to the KL.
    """

    reads = "attention_maps"
    masks_tokens = True

    def __init__(self, where: str = "attention maps") -> None:
        super().__init__()
        self.where = where

    @classmethod
    def from_shapes(cls, student: Sequence[int], teacher: Sequence[int], *, where: str) -> AttentionMaps:
        s, t = tuple(student), tuple(teacher)
        if len(s) != 4 or len(t) != 4 or s[-1] != s[-2] or s[-2:] != t[-2:]:
            raise ValueError(f"{where}: shapes {s} and {t} must both be (B, heads, N, N) with the same N "
                             f"(tap the attention probabilities, e.g. blocks.<i>.attn.attn_probs)")
        return cls(where)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for who, a in (("student", student), ("teacher", teacher)):
            if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
                raise ValueError(f"{self.where}: {who} attention has shape {tuple(a.shape)}; expected "
                                 f"(batch, heads, tokens, tokens)")
        if student.shape[0] != teacher.shape[0] or student.shape[-1] != teacher.shape[-1]:
            raise ValueError(f"{self.where}: student attention {tuple(student.shape)} and teacher attention "
                             f"{tuple(teacher.shape)} differ in batch or tokens (same patch grid and pooling needed)")
        teacher = teacher.detach()
        if student.shape[1] != teacher.shape[1]:
            student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
        log_student = student.clamp_min(torch.finfo(student.dtype).tiny).log()  # a softmax can underflow to 0
        if mask is None:
            rows = student.shape[0] * student.shape[1] * student.shape[2]
            return F.kl_div(log_student, teacher, reduction="sum") / rows
        if tuple(mask.shape) != (student.shape[0], student.shape[-1]):
            raise ValueError(f"{self.where}: token mask {tuple(mask.shape)} does not match attention "
                             f"{tuple(student.shape)} (expected (batch, tokens))")
        per_row = F.kl_div(log_student, teacher, reduction="none").sum(-1)  # (B, H, N)
        weights = mask.to(per_row.dtype)[:, None, :]
        return (per_row * weights).sum() / (weights.sum().clamp_min(1) * student.shape[1])
