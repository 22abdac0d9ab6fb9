"""Linear warm-up, then cosine annealing to 0: the schedule vision transformers are trained with.

Transformers trained from scratch with Adam diverge or stall when the full
learning rate hits the randomly initialised attention at step 0 (Goyal et
al. 2017 for the warm-up; DeiT, Touvron et al. 2021, trains every ViT with
it). Registered as lr_schedule "warmup_cosine" in choices.LR_SCHEDULES.
"""

from __future__ import annotations

import math

import torch

WARMUP_FRACTION = 0.05
"""Share of all steps spent warming up (DeiT: 5 of 300 epochs; short CPU runs need relatively more)."""


def warmup_factor(step: int, steps: int, warmup_fraction: float = WARMUP_FRACTION) -> float:
    """lr multiplier at `step` of `steps`: (step + 1) / W for the W warm-up steps, then 0.5 (1 + cos(pi t))."""
    warm = max(1, round(steps * warmup_fraction))
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, steps - warm))
    return 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_lr(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_factor(step, steps))
