"""MiniLM attention maps, TinyBERT hidden states and the layer maps, each against its formula."""

import math

import pytest
import torch

from steps.compression.distillation.attention_maps import AttentionMaps
from steps.compression.distillation.hidden_states import HiddenStates
from steps.compression.distillation.layer_maps import layer_map, uniform_layer_map

ROW_KL = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL([.75, .25] || [.5, .5]) = 0.130812


def maps(*rows_per_head) -> torch.Tensor:
    """(1, heads, N, N) attention from each head's rows."""
    return torch.tensor([list(rows_per_head)])


def test_attention_kl_golden_value():
    teacher = maps([[0.75, 0.25], [0.5, 0.5]])
    student = maps([[0.5, 0.5], [0.5, 0.5]])
    assert AttentionMaps()(student, teacher).item() == pytest.approx(ROW_KL / 2, abs=1e-6)  # mean over 2 rows
    assert ROW_KL == pytest.approx(0.130812, abs=1e-6)


def test_different_head_counts_compare_head_averaged_maps():
    teacher = maps([[1.0, 0.0], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]])  # mean: [[.75, .25], [.5, .5]]
    student = maps([[0.5, 0.5], [0.5, 0.5]])
    assert AttentionMaps()(student, teacher).item() == pytest.approx(ROW_KL / 2, abs=1e-6)


def test_attention_kl_is_zero_when_equal_and_finite_where_the_student_underflows():
    teacher = torch.softmax(torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1)), -1)
    assert AttentionMaps()(teacher.clone(), teacher).item() == pytest.approx(0, abs=1e-7)
    student = maps([[1.0, 0.0], [0.5, 0.5]])
    assert math.isfinite(AttentionMaps()(student, maps([[0.5, 0.5], [0.5, 0.5]])).item())


def test_attention_kl_names_the_layer_on_bad_shapes():
    loss = AttentionMaps("pair ('blocks.1.attn.attn_probs', 'blocks.3.attn.attn_probs')")
    with pytest.raises(ValueError, match="blocks.3.attn.attn_probs.*differ in batch or tokens"):
        loss(torch.full((1, 2, 17, 17), 1 / 17), torch.full((1, 2, 50, 50), 1 / 50))
    with pytest.raises(ValueError, match="blocks.1.attn.attn_probs.*student attention has shape \\(1, 17, 16\\)"):
        loss(torch.ones(1, 17, 16), torch.ones(1, 2, 17, 17))
    with pytest.raises(ValueError, match="pair 'x'.*same N"):
        AttentionMaps.from_shapes((1, 2, 17, 17), (1, 2, 50, 50), where="pair 'x'")


def test_hidden_mse_golden_values():
    assert HiddenStates(2, 2)(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 4.0]])).item() == pytest.approx(2.0)
    loss = HiddenStates(2, 3)
    with torch.no_grad():
        loss.project.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))  # [1, 2] -> [2, 2, 3]
    assert loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 2.0, 0.0]])).item() == pytest.approx(3.0)
    assert loss.project.bias is None  # TinyBERT's W_h has no bias


def test_hidden_mse_is_zero_when_equal_and_names_the_layer_on_bad_shapes():
    h = torch.randn(2, 17, 8)
    assert HiddenStates(8, 8)(h.clone(), h).item() == 0
    loss = HiddenStates(8, 16, "pair ('blocks.0', 'blocks.1')")
    with pytest.raises(ValueError, match="'blocks.1'.*every dim but the last"):
        loss(torch.randn(2, 17, 8), torch.randn(2, 50, 16))
    with pytest.raises(ValueError, match="'blocks.0'.*got widths 4 \\(student\\) and 16"):
        loss(torch.randn(2, 17, 4), torch.randn(2, 17, 16))
    assert (HiddenStates.from_shapes((2, 17, 8), (2, 17, 16), where="w").project.weight.shape) == (16, 8)
    with pytest.raises(ValueError, match="pair 'y'.*every dim but the last"):
        HiddenStates.from_shapes((2, 17, 8), (2, 50, 16), where="pair 'y'")


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
    assert layer_map("uniform", 2, 4) == [(0, 1), (1, 3)]
    with pytest.raises(ValueError, match="'skip'.*last.*uniform"):
        layer_map("skip", 2, 4)
    with pytest.raises(ValueError, match="depths must be >= 1"):
        layer_map("last", 0, 4)
