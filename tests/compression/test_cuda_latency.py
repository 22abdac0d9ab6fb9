"""measure.cuda_latency_ms: a model on CPU refused by name; on a CUDA device (where one exists: skipped otherwise,
`make test` needs none) one sample per repeat, p95 at least p50."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from steps.compression import measure


def test_a_model_off_the_gpu_is_refused_naming_its_device():
    with pytest.raises(ValueError, match="times a model on a CUDA device; this one is on cpu"):
        measure.cuda_latency_ms(nn.Linear(4, 2), torch.randn(3, 4), warmup=1, repeats=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_events_time_every_repeat():
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 8)).cuda()
    timed = measure.cuda_latency_ms(model, torch.randn(32, 64), warmup=2, repeats=9)
    assert timed["n"] == 9 and 0 < timed["p50"] <= timed["p95"] <= timed["max"]
    assert model.training  # the mode it had, restored
