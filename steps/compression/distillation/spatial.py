"""Bringing two feature maps to one spatial size, for the terms that compare CNN activations."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool the last two dims of both tensors to the smaller of each (no-op when equal)."""
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    return _pool_to(a, size), _pool_to(b, size)


def _pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == size else F.adaptive_avg_pool2d(x, size)
