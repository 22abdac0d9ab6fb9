import pytest
import torch
from torch import nn
from torch.nn import functional as F

from steps.compression.distillation import AttentionTransferLoss, DistillationObjective, FeatureHintLoss, KDLoss
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec
from steps.compression.features import FeatureTap


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


def soft_grad_norm(temp: float, scale_by_t2: bool) -> float:
    """|d loss / d student logits| of the soft term, with or without the T^2 factor (reference computed here)."""
    gen = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(16, 10, generator=gen) * 10, torch.randn(16, 10, generator=gen) * 10
    student.requires_grad_()
    if scale_by_t2:
        loss = KDLoss(temp, 1.0)(student, teacher, torch.zeros(16, dtype=torch.long))
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


# ---- FitNets hints ------------------------------------------------------------------------------


def feats(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_hint_is_zero_for_identical_features_with_identity_regressor():
    hint, x = FeatureHintLoss(8, 8), feats(2, 8, 7, 7)
    assert isinstance(hint.regressor, nn.Identity)
    assert hint(x, x.clone()).item() == 0.0
    assert hint(x, feats(2, 8, 7, 7, seed=1)).item() > 0


@pytest.mark.parametrize(("student", "teacher"), [((2, 4, 14, 14), (2, 8, 7, 7)), ((2, 4, 7, 7), (2, 8, 14, 14))])
def test_hint_maps_width_and_pools_the_larger_map(student, teacher):
    hint = FeatureHintLoss(4, 8)
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
    hint = FeatureHintLoss(6, 16, ndim=2)
    assert isinstance(hint.regressor, nn.Linear)
    assert hint(feats(3, 6), feats(3, 16)).ndim == 0
    with pytest.raises(ValueError, match="student features have shape"):
        hint(feats(3, 5), feats(3, 16))
    with pytest.raises(ValueError, match="ndim"):
        FeatureHintLoss(6, 16, ndim=3)


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
    student, hint = toy_student(3), FeatureHintLoss(3, 8)
    losses = train(hint, student, list(hint.parameters()), x, target)
    assert losses[-1] < 0.5 * losses[0]


# ---- attention transfer -------------------------------------------------------------------------


def test_attention_matches_the_formula():
    s, t = feats(2, 3, 4, 4), feats(2, 5, 4, 4, seed=1)
    q_s, q_t = s.pow(2).sum(1).flatten(1), t.pow(2).sum(1).flatten(1)
    diff = q_s / q_s.norm(dim=1, keepdim=True) - q_t / q_t.norm(dim=1, keepdim=True)
    assert AttentionTransferLoss()(s, t).item() == pytest.approx(diff.norm(dim=1).mean().item(), rel=1e-5)


def test_attention_is_zero_for_identical_and_positive_for_different_maps():
    at, a = AttentionTransferLoss(), feats(2, 4, 6, 6)
    assert at(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert at(a, feats(2, 4, 6, 6, seed=1)).item() > 0.05


def test_attention_is_invariant_to_positive_scaling():
    at, s, t = AttentionTransferLoss(), feats(2, 4, 6, 6), feats(2, 8, 6, 6, seed=1)
    base = at(s, t).item()
    assert at(3.7 * s, t).item() == pytest.approx(base, rel=1e-5)
    assert at(s, 0.05 * t).item() == pytest.approx(base, rel=1e-5)


def test_attention_handles_different_widths_and_sizes_but_needs_4d():
    s, t = feats(2, 4, 14, 14).requires_grad_(), feats(2, 16, 7, 7, seed=1).requires_grad_()
    AttentionTransferLoss()(s, t).backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(ValueError, match="4-D"):
        AttentionTransferLoss()(feats(2, 4), feats(2, 4))


def test_attention_loss_decreases_when_training_a_toy_student(one_thread):
    torch.manual_seed(0)
    x = feats(8, 1, 8, 8)
    with torch.no_grad():
        target = toy_student(8)(x)
    losses = train(AttentionTransferLoss(), toy_student(3), [], x, target)
    assert losses[-1] < 0.6 * losses[0]


# ---- combined objective -------------------------------------------------------------------------


def cnn(channels: list[int], hidden: list[int]) -> nn.Module:
    return build(ModelSpec(name="cnn", channels=channels, hidden=hidden))


def test_objective_without_feature_pairs_is_kd():
    s, t, y = logits(0), logits(1), torch.arange(8) % 10
    assert DistillationObjective(3.0, 0.7)(s, t, y).item() == pytest.approx(KDLoss(3.0, 0.7)(s, t, y).item())


def test_objective_from_models_end_to_end(one_thread):
    torch.manual_seed(0)
    teacher, student = cnn([8, 16], [16]), cnn([4, 8], [8])
    x, y = feats(4, 1, 28, 28), torch.arange(4)
    bn_stats = teacher.features[1].running_mean.clone()
    objective = DistillationObjective.from_models(
        student, teacher, x[:1], temperature=4.0, alpha=0.9,
        hint_layers=[("features.6", "features.6"), ("classifier.2", "classifier.2")],  # 2nd ReLU; hidden ReLU
        attention_layers=[("features.2", "features.2"), ("features.7", "features.7")],  # 1st ReLU; last pool
        hint_weight=0.5, attention_weight=10.0)
    assert torch.equal(teacher.features[1].running_mean, bn_stats)  # probing ran in eval mode
    assert (objective.hints[0].regressor.in_channels, objective.hints[0].regressor.out_channels) == (8, 16)
    assert isinstance(objective.hints[1].regressor, nn.Linear)
    opt = torch.optim.Adam([*student.parameters(), *objective.parameters()], lr=1e-3)
    with FeatureTap(student, objective.student_layers) as s_tap, FeatureTap(teacher, objective.teacher_layers) as t_tap:
        with torch.no_grad():
            t_logits = teacher(x)
        s_logits = student(x)
        terms = objective.terms(s_logits, t_logits, y, s_tap.outputs, t_tap.outputs)
        loss = objective(s_logits, t_logits, y, s_tap.outputs, t_tap.outputs)
    assert terms["hint"] > 0 and terms["attention"] > 0
    assert loss.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-5)
    loss.backward()
    assert student.features[0].weight.grad.abs().sum() > 0
    assert objective.hints[0].regressor.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    opt.step()


def test_objective_from_models_names_a_bad_layer():
    teacher, student = cnn([8, 16], []), cnn([4, 8], [])
    with pytest.raises(ValueError, match=r"'features\.42'"):
        DistillationObjective.from_models(student, teacher, feats(1, 1, 28, 28), 4.0, 0.5,
                                          hint_layers=[("features.2", "features.42")])
    with pytest.raises(ValueError, match="4-D"):
        DistillationObjective.from_models(student, teacher, feats(1, 1, 28, 28), 4.0, 0.5,
                                          attention_layers=[("classifier.0", "classifier.0")])


def test_objective_names_a_feature_missing_at_forward():
    objective = DistillationObjective(2.0, 0.5, attention_layers=[("features.2", "features.2")])
    s, t, y = logits(0), logits(1), torch.arange(8) % 10
    with pytest.raises(ValueError, match="no student feature 'features.2'"):
        objective(s, t, y, {}, {"features.2": feats(8, 4, 7, 7)})
