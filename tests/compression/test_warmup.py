import math

import pytest
import torch

from steps.compression.warmup import warmup_cosine_lr, warmup_factor


def test_warmup_then_cosine_golden_values():
    # 100 steps: 5 warm-up steps at 1/5 .. 5/5, then cosine over the 95 left
    assert [warmup_factor(s, 100) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert warmup_factor(5, 100) == pytest.approx(1.0)
    assert warmup_factor(5 + 95 // 2, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert warmup_factor(100, 100) == pytest.approx(0.0)


def test_the_scheduler_applies_the_factor_to_the_optimizer():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = warmup_cosine_lr(opt, 20)  # one warm-up step: 20 * 0.05
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    opt.step()
    scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0 / 19)))
