"""The contract every distillation term meets (see the package docstring for what `reads` means)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn


class Term(nn.Module):
    """One summand of the objective: `forward` is the term's formula, without its weight.

    A term reading features also has a classmethod `from_shapes(student_shape, teacher_shape, *, where)`
    that checks the shapes one forward pass gave and builds the term for that pair; `where` names the
    pair in its errors. Terms reading logits or labels are built from their options alone.
    """

    reads: ClassVar[str]
    masks_tokens: ClassVar[bool] = False
    """Whether `forward` also takes `mask`: (B, N), 1 on the tokens to count (a text's attention mask: padding
    is 0), or None to count every position. The objective passes it to these terms only."""

    def coefficient(self, weight: float) -> float:
        """The Python float the objective multiplies the term's value by: its weight, times any constant
        factor of the formula (folded in here so the tensor is multiplied, and rounded, once)."""
        return weight
