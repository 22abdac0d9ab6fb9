import copy
import math

import pytest
import torch

from steps.compression.families import build
from steps.compression.families.spec import ModelSpec
from steps.compression.features import FeatureTap
from steps.compression.transformer_distillation import (
    AttentionMapLoss,
    HiddenStateLoss,
    TransformerObjective,
    attention_pairs,
    hidden_pairs,
    layer_map,
    uniform_layer_map,
)

pytestmark = pytest.mark.usefixtures("one_thread")

X = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.arange(6) % 10
TEACHER = ModelSpec(name="vit", embed_dim=16, depth=4, heads=4)
STUDENT = ModelSpec(name="vit", embed_dim=8, depth=2, heads=2)
ROW_KL = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL([.75, .25] || [.5, .5]) = 0.130812


def maps(*rows_per_head) -> torch.Tensor:
    """(1, heads, N, N) attention from each head's rows."""
    return torch.tensor([list(rows_per_head)])


def test_attention_kl_golden_value():
    teacher = maps([[0.75, 0.25], [0.5, 0.5]])
    student = maps([[0.5, 0.5], [0.5, 0.5]])
    assert AttentionMapLoss()(student, teacher).item() == pytest.approx(ROW_KL / 2, abs=1e-6)  # mean over 2 rows
    assert ROW_KL == pytest.approx(0.130812, abs=1e-6)


def test_different_head_counts_compare_head_averaged_maps():
    teacher = maps([[1.0, 0.0], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]])  # mean: [[.75, .25], [.5, .5]]
    student = maps([[0.5, 0.5], [0.5, 0.5]])
    assert AttentionMapLoss()(student, teacher).item() == pytest.approx(ROW_KL / 2, abs=1e-6)


def test_attention_kl_is_zero_when_equal_and_finite_where_the_student_underflows():
    teacher = torch.softmax(torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1)), -1)
    assert AttentionMapLoss()(teacher.clone(), teacher).item() == pytest.approx(0, abs=1e-7)
    student = maps([[1.0, 0.0], [0.5, 0.5]])
    assert math.isfinite(AttentionMapLoss()(student, maps([[0.5, 0.5], [0.5, 0.5]])).item())


def test_attention_kl_names_the_layer_on_bad_shapes():
    loss = AttentionMapLoss("pair ('blocks.1.attn.attn_probs', 'blocks.3.attn.attn_probs')")
    with pytest.raises(ValueError, match="blocks.3.attn.attn_probs.*differ in batch or tokens"):
        loss(torch.full((1, 2, 17, 17), 1 / 17), torch.full((1, 2, 50, 50), 1 / 50))
    with pytest.raises(ValueError, match="blocks.1.attn.attn_probs.*student attention has shape \\(1, 17, 16\\)"):
        loss(torch.ones(1, 17, 16), torch.ones(1, 2, 17, 17))


def test_hidden_mse_golden_values():
    assert HiddenStateLoss(2, 2)(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 4.0]])).item() == pytest.approx(2.0)
    loss = HiddenStateLoss(2, 3)
    with torch.no_grad():
        loss.project.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))  # [1, 2] -> [2, 2, 3]
    assert loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 2.0, 0.0]])).item() == pytest.approx(3.0)
    assert loss.project.bias is None  # TinyBERT's W_h has no bias


def test_hidden_mse_is_zero_when_equal_and_names_the_layer_on_bad_shapes():
    h = torch.randn(2, 17, 8)
    assert HiddenStateLoss(8, 8)(h.clone(), h).item() == 0
    loss = HiddenStateLoss(8, 16, "pair ('blocks.0', 'blocks.1')")
    with pytest.raises(ValueError, match="'blocks.1'.*every dim but the last"):
        loss(torch.randn(2, 17, 8), torch.randn(2, 50, 16))
    with pytest.raises(ValueError, match="'blocks.0'.*got widths 4 \\(student\\) and 16"):
        loss(torch.randn(2, 17, 4), torch.randn(2, 17, 16))


@pytest.mark.parametrize(("student", "teacher", "expected"), [
    (4, 6, [(0, 1), (1, 2), (2, 4), (3, 5)]),
    (2, 4, [(0, 1), (1, 3)]),
    (4, 2, [(0, 0), (1, 0), (2, 1), (3, 1)]),
    (3, 3, [(0, 0), (1, 1), (2, 2)]),
])
def test_uniform_layer_map(student, teacher, expected):
    assert uniform_layer_map(student, teacher) == expected


def test_layer_maps_by_name():
    assert layer_map("last", 2, 4) == [(1, 3)]
    assert attention_pairs([(0, 1)]) == [("blocks.0.attn.attn_probs", "blocks.1.attn.attn_probs")]
    assert hidden_pairs([(1, 3)]) == [("blocks.1", "blocks.3")]
    with pytest.raises(ValueError, match="'skip'.*last.*uniform"):
        layer_map("skip", 2, 4)


def models(teacher_spec: ModelSpec, student_spec: ModelSpec):
    torch.manual_seed(0)
    return build(teacher_spec).eval(), build(student_spec).train()


def one_batch(objective: TransformerObjective, teacher, student):
    with torch.no_grad(), FeatureTap(teacher, objective.teacher_layers) as t_tap:
        t_logits = teacher(X)
    with FeatureTap(student, objective.student_layers) as s_tap:
        s_logits = student(X)
    terms = objective.terms(s_logits, t_logits, Y, s_tap.outputs, t_tap.outputs)
    return objective(s_logits, t_logits, Y, s_tap.outputs, t_tap.outputs), terms


def test_vit_teacher_to_smaller_vit_student():
    teacher, student = models(TEACHER, STUDENT)
    blocks = uniform_layer_map(2, 4)
    objective = TransformerObjective.from_models(student, teacher, X[:2], 4.0, 0.5,
                                                 attention_map_layers=attention_pairs(blocks),
                                                 hidden_layers=hidden_pairs(blocks), hidden_weight=0.5)
    assert [h.project.weight.shape for h in objective.hidden] == [(16, 8), (16, 8)]
    loss, terms = one_batch(objective, teacher, student)
    assert set(terms) == {"kd", "hint", "attention", "attention_map", "hidden"}
    assert terms["attention_map"] > 0 and terms["hidden"] > 0 and terms["hint"] == 0
    assert loss.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-5)
    loss.backward()
    assert student.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(h.project.weight.grad.abs().sum() > 0 for h in objective.hidden)
    assert all(p.grad is None for p in teacher.parameters())


def test_cnn_teacher_to_vit_student():
    teacher, student = models(ModelSpec(name="cnn", channels=[4, 8], hidden=[16]), STUDENT)
    objective = TransformerObjective.from_models(student, teacher, X[:2], 4.0, 0.9,
                                                 hidden_layers=[("pool", "classifier.2")])
    loss, terms = one_batch(objective, teacher, student)
    assert terms["hidden"] > 0 and terms["attention_map"] == 0
    loss.backward()
    assert student.patch_embed.weight.grad.abs().sum() > 0
    assert objective.hidden[0].project.weight.grad.abs().sum() > 0


def test_transformer_terms_vanish_when_the_student_is_the_teacher():
    teacher, _ = models(TEACHER, STUDENT)
    student = copy.deepcopy(teacher)
    pairs = [(i, i) for i in range(4)]
    objective = TransformerObjective.from_models(student, teacher, X[:2], 4.0, 1.0,
                                                 attention_map_layers=attention_pairs(pairs),
                                                 hidden_layers=hidden_pairs(pairs))
    _, terms = one_batch(objective, teacher, student)
    assert terms["attention_map"].item() == pytest.approx(0, abs=1e-7)
    assert terms["hidden"].item() == 0
    assert terms["kd"].item() == pytest.approx(0, abs=1e-6)


def test_pairs_that_cannot_be_compared_are_refused_naming_them():
    teacher, student = models(TEACHER, ModelSpec(name="vit", embed_dim=8, depth=2, heads=2, patch_size=4))
    with pytest.raises(ValueError, match="attention map pair \\('blocks.1.attn.attn_probs', "
                                         "'blocks.3.attn.attn_probs'\\).*same N"):
        TransformerObjective.from_models(student, teacher, X[:2], 4.0, 0.5,
                                         attention_map_layers=attention_pairs([(1, 3)]))
    with pytest.raises(ValueError, match="hidden pair \\('blocks.0', 'blocks.1'\\).*every dim but the last"):
        TransformerObjective.from_models(student, teacher, X[:2], 4.0, 0.5, hidden_layers=hidden_pairs([(0, 1)]))
    with pytest.raises(ValueError, match="has no module named 'blocks.7'"):
        TransformerObjective.from_models(student, teacher, X[:2], 4.0, 0.5, hidden_layers=hidden_pairs([(0, 7)]))


def test_missing_features_and_bad_settings_are_refused():
    objective = TransformerObjective(4.0, 0.5, attention_map_layers=attention_pairs([(0, 0)]))
    logits = torch.zeros(6, 10)
    with pytest.raises(ValueError, match="no student feature 'blocks.0.attn.attn_probs'"):
        objective(logits, logits, Y, {}, {})
    with pytest.raises(ValueError, match="one \\(student, teacher\\) width per hidden pair"):
        TransformerObjective(4.0, 0.5, hidden_layers=hidden_pairs([(0, 0)]))
    with pytest.raises(ValueError, match="hidden_weight must be >= 0"):
        TransformerObjective(4.0, 0.5, hidden_weight=-1.0)
