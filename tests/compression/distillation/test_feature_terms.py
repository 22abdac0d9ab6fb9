"""FitNets hints and attention transfer, each against its formula."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from steps.compression.distillation.attention_transfer import AttentionTransfer
from steps.compression.distillation.hints import FitNetsHint


def feats(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- FitNets hints ------------------------------------------------------------------------------


def test_hint_is_zero_for_identical_features_with_identity_regressor():
    hint, x = FitNetsHint(8, 8), feats(2, 8, 7, 7)
    assert isinstance(hint.regressor, nn.Identity)
    assert hint(x, x.clone()).item() == 0.0
    assert hint(x, feats(2, 8, 7, 7, seed=1)).item() > 0


def test_hint_golden_value():
    hint = FitNetsHint(2, 1, ndim=2)
    with torch.no_grad():
        hint.regressor.weight.copy_(torch.tensor([[1.0, 2.0]]))
        hint.regressor.bias.fill_(0.5)
    # r([1, 1]) = 3.5, r([0, 1]) = 2.5; targets 1.5 and 2.5: MSE = (2^2 + 0^2) / 2
    assert hint(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), torch.tensor([[1.5], [2.5]])).item() == pytest.approx(2.0)


@pytest.mark.parametrize(("student", "teacher"), [((2, 4, 14, 14), (2, 8, 7, 7)), ((2, 4, 7, 7), (2, 8, 14, 14))])
def test_hint_maps_width_and_pools_the_larger_map(student, teacher):
    hint = FitNetsHint(4, 8)
    assert isinstance(hint.regressor, nn.Conv2d) and hint.regressor.kernel_size == (1, 1)
    s, t = feats(*student).requires_grad_(), feats(*teacher, seed=1).requires_grad_()
    loss = hint(s, t)
    assert loss.ndim == 0
    loss.backward()
    assert s.grad is not None and t.grad is None
    assert all(p.requires_grad and p.grad is not None for p in hint.parameters())
    pooled_s, pooled_t = F.adaptive_avg_pool2d(s, 7), F.adaptive_avg_pool2d(t, 7)  # identity on the 7x7 one
    assert loss.item() == pytest.approx(F.mse_loss(hint.regressor(pooled_s), pooled_t).item(), rel=1e-5)


def test_hint_uses_a_linear_regressor_for_vectors_and_checks_shapes():
    hint = FitNetsHint(6, 16, ndim=2)
    assert isinstance(hint.regressor, nn.Linear)
    assert hint(feats(3, 6), feats(3, 16)).ndim == 0
    with pytest.raises(ValueError, match="student features have shape"):
        hint(feats(3, 5), feats(3, 16))
    with pytest.raises(ValueError, match="ndim"):
        FitNetsHint(6, 16, ndim=3)


def test_hint_from_shapes_reads_widths_and_refuses_mixed_ndims():
    hint = FitNetsHint.from_shapes((1, 4, 7, 7), (1, 8, 14, 14), where="hints pair ('a', 'b')")
    assert (hint.student_channels, hint.teacher_channels, hint.ndim) == (4, 8, 4)
    with pytest.raises(ValueError, match=r"hints pair \('a', 'b'\): shapes \(1, 4, 7, 7\) and \(1, 8\) must both"):
        FitNetsHint.from_shapes((1, 4, 7, 7), (1, 8), where="hints pair ('a', 'b')")


def toy_student(out_channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, out_channels, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2))


def train(loss_fn, student: nn.Module, extra: list, x: torch.Tensor, target: torch.Tensor, steps: int = 30):
    opt = torch.optim.Adam([*student.parameters(), *extra], lr=0.02)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(student(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_hint_loss_decreases_when_training_a_toy_student(one_thread):
    torch.manual_seed(0)
    x = feats(8, 1, 8, 8)
    with torch.no_grad():
        target = toy_student(8)(x)  # a fixed random "teacher" with 8 channels at 8x8 -> 4x4
    student, hint = toy_student(3), FitNetsHint(3, 8)
    losses = train(hint, student, list(hint.parameters()), x, target)
    assert losses[-1] < 0.5 * losses[0]


# ---- attention transfer -------------------------------------------------------------------------


def test_attention_matches_the_formula():
    s, t = feats(2, 3, 4, 4), feats(2, 5, 4, 4, seed=1)
    q_s, q_t = s.pow(2).sum(1).flatten(1), t.pow(2).sum(1).flatten(1)
    diff = q_s / q_s.norm(dim=1, keepdim=True) - q_t / q_t.norm(dim=1, keepdim=True)
    assert AttentionTransfer()(s, t).item() == pytest.approx(diff.norm(dim=1).mean().item(), rel=1e-5)


def test_attention_golden_value():
    # Q_s = [1, 0], Q_t = [0, 1] (one channel, 1x2 maps, p = 2): || e1 - e2 || = sqrt(2)
    s, t = torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([[[[0.0, 3.0]]]])
    assert AttentionTransfer()(s, t).item() == pytest.approx(2 ** 0.5, rel=1e-6)


def test_attention_is_zero_for_identical_and_positive_for_different_maps():
    at, a = AttentionTransfer(), feats(2, 4, 6, 6)
    assert at(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert at(a, feats(2, 4, 6, 6, seed=1)).item() > 0.05


def test_attention_is_invariant_to_positive_scaling():
    at, s, t = AttentionTransfer(), feats(2, 4, 6, 6), feats(2, 8, 6, 6, seed=1)
    base = at(s, t).item()
    assert at(3.7 * s, t).item() == pytest.approx(base, rel=1e-5)
    assert at(s, 0.05 * t).item() == pytest.approx(base, rel=1e-5)


def test_attention_handles_different_widths_and_sizes_but_needs_4d():
    s, t = feats(2, 4, 14, 14).requires_grad_(), feats(2, 16, 7, 7, seed=1).requires_grad_()
    AttentionTransfer()(s, t).backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(ValueError, match="4-D"):
        AttentionTransfer()(feats(2, 4), feats(2, 4))
    with pytest.raises(ValueError, match="must both be 4-D"):
        AttentionTransfer.from_shapes((2, 4), (2, 4, 7, 7), where="attention_transfer pair ('a', 'b')")


def test_attention_loss_decreases_when_training_a_toy_student(one_thread):
    torch.manual_seed(0)
    x = feats(8, 1, 8, 8)
    with torch.no_grad():
        target = toy_student(8)(x)
    losses = train(AttentionTransfer(), toy_student(3), [], x, target)
    assert losses[-1] < 0.6 * losses[0]
