"""resources.precision: bf16 autocasts training on CPU, fp16 is refused there naming the key."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from steps import config
from steps.compression import precision
from steps.compression.precision import Precision
from steps.compression.training import train_epochs
from tests.helpers import tiny_params


def _train(precision: str) -> tuple[list[float], torch.Tensor]:
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    losses: list[float] = []
    train_epochs(model, torch.optim.SGD(model.parameters(), lr=0.5), 64, 16, 3,
                 lambda m, idx: nn.functional.cross_entropy(m(x[idx]), y[idx]),
                 generator=torch.Generator().manual_seed(0), description="t",
                 on_epoch=lambda epoch, loss: losses.append(loss), precision=precision)
    return losses, model[0].weight.detach().clone()


def test_bf16_trains_in_bfloat16_on_cpu(one_thread):
    fp32_losses, fp32_weight = _train("fp32")
    bf16_losses, bf16_weight = _train("bf16")
    assert bf16_losses[-1] < bf16_losses[0]
    assert not torch.equal(bf16_weight, fp32_weight)  # autocast ran: bf16 rounding moved the weights
    assert bf16_losses == pytest.approx(fp32_losses, rel=0.05)  # but not far
    with Precision("bf16", torch.device("cpu")).autocast():
        assert nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16


def test_fp16_is_refused_on_cpu_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="resources.precision fp16 needs a CUDA device"):
        Precision("fp16", torch.device("cpu"))
    raw = tiny_params(tmp_path)
    raw["device"], raw["resources"] = "cpu", {"precision": "fp16"}
    with pytest.raises(config.ConfigError, match="resources.precision fp16 needs a CUDA device"):
        config.validate(raw)
    raw["resources"] = {"backend": "nccl", "processes": 2}
    with pytest.raises(config.ConfigError, match="resources.backend nccl needs CUDA"):
        config.validate(raw)


def test_bf16_is_refused_on_a_gpu_that_only_emulates_it(monkeypatch):
    """A V100 or T4 (compute capability 7.x): torch.cuda.is_bf16_supported() says True by counting emulation,
    False when asked for native support."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    with pytest.raises(ValueError, match=r"resources.precision bf16 needs a GPU with bfloat16 support .*use fp16 "
                                         r"or fp32"):
        Precision("bf16", torch.device("cuda"))
    precision.check("fp16", torch.device("cuda"))  # what it suggests is accepted
    assert Precision("bf16", torch.device("cpu")).name == "bf16"  # on CPU bf16 autocasts as before


def test_bf16_is_accepted_on_a_gpu_with_native_bfloat16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert Precision("bf16", torch.device("cuda")).name == "bf16"
