"""Soft targets and hard labels: each against its formula, and together bit-identical to the KD loss
shrinkflow computed before the terms were split (alpha * T * T * KL + (1 - alpha) * CE)."""

import pytest
import torch
from torch.nn import functional as F

from steps.compression.distillation.hard_labels import HardLabels
from steps.compression.distillation.objective import TermSpec, WeightedSum, build
from steps.compression.distillation.soft_targets import SoftTargets


def logits(seed: int) -> torch.Tensor:
    return torch.randn(8, 10, generator=torch.Generator().manual_seed(seed))


Y = torch.arange(8) % 10


def kd(temperature: float, alpha: float) -> WeightedSum:
    """The objective the distill stage builds from `temperature` and `alpha` alone (no models are probed)."""
    specs = [TermSpec("soft_targets", alpha, options={"temperature": temperature}), TermSpec("hard_labels", 1 - alpha)]
    return build(specs, None, None, None)


def kd_before_the_split(student, teacher, target, temperature, alpha):
    """The KD loss as it was written before (KDLoss.forward), evaluation order included."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student, target)
    return alpha * t * t * soft + (1 - alpha) * hard


@pytest.mark.parametrize(("temperature", "alpha"), [(4.0, 0.5), (3.0, 0.7), (2.5, 0.1), (7.0, 1.0), (1.3, 0.0),
                                                    (0.7, 0.33)])
def test_soft_plus_hard_is_the_old_kd_loss_bit_for_bit(temperature, alpha):
    s, t = logits(0).requires_grad_(), logits(1)
    new = kd(temperature, alpha)(s, t, Y)
    (new_grad,) = torch.autograd.grad(new, s)
    old = kd_before_the_split(s, t, Y, temperature, alpha)
    (old_grad,) = torch.autograd.grad(old, s)
    assert torch.equal(new, old)
    assert torch.equal(new_grad, old_grad)


def test_alpha_zero_is_plain_cross_entropy():
    s, t = logits(0), logits(1)
    assert kd(4.0, 0.0)(s, t, Y).item() == pytest.approx(F.cross_entropy(s, Y).item())


def test_soft_targets_match_the_formula():
    s, t, temp = logits(0), logits(1), 3.0
    p_t = F.softmax(t / temp, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / temp, 1))).sum(1).mean()
    soft = SoftTargets(temp)
    assert soft(s, t).item() == pytest.approx(kl.item(), rel=1e-5)
    assert soft.coefficient(0.7) == 0.7 * temp * temp  # T^2 applied with the weight
    assert HardLabels().coefficient(0.3) == 0.3


def test_the_weighted_sum_matches_the_formula():
    s, t, temp, alpha = logits(0), logits(1), 3.0, 0.7
    p_t = F.softmax(t / temp, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / temp, 1))).sum(1).mean()
    expected = alpha * temp**2 * kl + (1 - alpha) * F.cross_entropy(s, Y)
    objective = kd(temp, alpha)
    assert objective(s, t, Y).item() == pytest.approx(expected.item(), rel=1e-5)
    parts = objective.summands(s, t, Y)
    assert list(parts) == ["soft_targets", "hard_labels"]
    assert parts["hard_labels"].item() == pytest.approx((1 - alpha) * F.cross_entropy(s, Y).item(), rel=1e-6)


def test_hard_labels_golden_value():
    # CE of [2, 0, -1] for class 0: log(e^2 + 1 + e^-1) - 2
    assert HardLabels()(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])).item() == pytest.approx(0.1698, abs=1e-4)


def test_soft_term_vanishes_when_student_equals_teacher():
    t = logits(1)
    assert kd(4.0, 1.0)(t, t, Y).item() == pytest.approx(0.0, abs=1e-6)


def test_golden_value():
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[1.0, 1.0, 0.0]])
    loss = kd(2.0, 0.5)(s, t, torch.tensor([0]))
    assert loss.item() == pytest.approx(0.33032, abs=1e-4)


@pytest.mark.parametrize(("temperature", "alpha", "message"), [(0.0, 0.5, "temperature must be > 0"),
                                                               (-1.0, 0.5, "temperature must be > 0"),
                                                               (2.0, 1.5, "hard_labels: weight must be >= 0"),
                                                               (2.0, -0.5, "soft_targets: weight must be >= 0")])
def test_bad_settings_are_refused(temperature, alpha, message):
    with pytest.raises(ValueError, match=message):
        kd(temperature, alpha)


def soft_grad_norm(temp: float, scale_by_t2: bool) -> float:
    """|d loss / d student logits| of the soft term, with or without the T^2 factor (reference computed here)."""
    gen = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(16, 10, generator=gen) * 10, torch.randn(16, 10, generator=gen) * 10
    student.requires_grad_()
    if scale_by_t2:
        loss = kd(temp, 1.0)(student, teacher, torch.zeros(16, dtype=torch.long))
    else:
        loss = F.kl_div(F.log_softmax(student / temp, 1), F.log_softmax(teacher / temp, 1),
                        reduction="batchmean", log_target=True)
    loss.backward()
    return student.grad.norm().item()


def test_kd_soft_gradient_keeps_its_scale_across_temperatures():
    with_t2 = soft_grad_norm(8.0, True) / soft_grad_norm(2.0, True)
    without_t2 = soft_grad_norm(8.0, False) / soft_grad_norm(2.0, False)
    assert 0.5 < with_t2 < 2.5
    assert without_t2 < 0.2  # the bare KL gradient shrinks by ~T^2 (here 16x)
    assert with_t2 == pytest.approx(without_t2 * 16, rel=1e-4)
