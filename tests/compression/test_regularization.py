import pytest
import torch
from torch import nn
from torch.nn import functional as F

from steps.compression import regularization
from steps.compression.regularization import TARGETS, l1_penalty, near_zero_fraction


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def test_golden_values():
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[0].weight.fill_(-3.0)
        model[0].bias.fill_(100.0)  # biases are not penalised
        model[1].weight.fill_(-0.5)
        model[3].weight.copy_(torch.tensor([[1.0], [-2.0]]))
    assert l1_penalty(model, 0.1, "weights").item() == pytest.approx(0.1 * (3 + 1 + 2))
    assert l1_penalty(model, 0.1, "bn_scale").item() == pytest.approx(0.1 * 0.5)
    assert near_zero_fraction(model, "bn_scale") == 0.0
    with torch.no_grad():
        model[3].weight[0] = 1e-4
    assert near_zero_fraction(model, "weights") == pytest.approx(1 / 3)


def test_penalty_is_differentiable():
    model = tiny()
    l1_penalty(model, 1.0, "bn_scale").backward()
    assert torch.equal(model[1].weight.grad, torch.sign(model[1].weight.detach()))




def train(target: str, coefficient: float) -> float:
    model = tiny()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 20, generator=g), torch.randint(0, 4, (32,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        (F.cross_entropy(model(x), y) + l1_penalty(model, coefficient, target)).backward()
        opt.step()
    return near_zero_fraction(model, target, threshold=1e-2)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_large_coefficient_makes_sparsity_emerge(target, one_thread):
    plain, sparse = train(target, 0.0), train(target, 0.2)
    assert plain < 0.1
    assert sparse > plain + 0.3


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="'gamma'.*bn_scale.*weights"):
        l1_penalty(tiny(), 0.1, "gamma")
    with pytest.raises(ValueError, match="coefficient must be >= 0"):
        l1_penalty(tiny(), -1.0, "weights")
    with pytest.raises(ValueError, match="'bn_scale'.*no such parameters"):
        regularization.near_zero_fraction(nn.Linear(3, 2), "bn_scale")
