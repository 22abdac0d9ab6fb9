import pytest
import torch
from torch.nn import functional as F

from steps.compression.distillation import KDLoss


def logits(seed: int) -> torch.Tensor:
    return torch.randn(8, 10, generator=torch.Generator().manual_seed(seed))


def test_alpha_zero_is_plain_cross_entropy():
    s, t, y = logits(0), logits(1), torch.arange(8) % 10
    assert KDLoss(4.0, 0.0)(s, t, y).item() == pytest.approx(F.cross_entropy(s, y).item())


def test_matches_the_formula():
    s, t, y, temp, alpha = logits(0), logits(1), torch.arange(8) % 10, 3.0, 0.7
    p_t = F.softmax(t / temp, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / temp, 1))).sum(1).mean()
    expected = alpha * temp**2 * kl + (1 - alpha) * F.cross_entropy(s, y)
    assert KDLoss(temp, alpha)(s, t, y).item() == pytest.approx(expected.item(), rel=1e-5)


def test_soft_term_vanishes_when_student_equals_teacher():
    t, y = logits(1), torch.arange(8) % 10
    assert KDLoss(4.0, 1.0)(t, t, y).item() == pytest.approx(0.0, abs=1e-6)


def test_golden_value():
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[1.0, 1.0, 0.0]])
    loss = KDLoss(2.0, 0.5)(s, t, torch.tensor([0]))
    assert loss.item() == pytest.approx(0.33032, abs=1e-4)


@pytest.mark.parametrize(("temperature", "alpha"), [(0.0, 0.5), (-1.0, 0.5), (2.0, 1.5)])
def test_bad_settings_are_refused(temperature, alpha):
    with pytest.raises(ValueError):
        KDLoss(temperature, alpha)
