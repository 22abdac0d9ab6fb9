"""Every importance criterion through the one contract (`Importance.__call__(group) -> 1-D scores`), on small
groups whose scores are worked out by hand."""

import math

import pytest
import torch
import torch_pruning as tp
from torch import nn

from steps.compression import choices
from steps.compression.criteria import Importance, criterion

# Linear(2 -> 3) ReLU Linear(3 -> 2), no biases: the group is hidden unit i = row i of W1 and column i of W2.
W1 = torch.tensor([[1.0, -2.0], [0.0, 3.0], [-1.0, 1.0]])
W2 = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.0]])
X = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
Y = torch.tensor([0, 1])


def mlp() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(W1)
        model[2].weight.copy_(W2)
    return model


def hidden_group(model: nn.Module):
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=X)
    return graph.get_pruning_group(model[2], tp.prune_linear_in_channels, [0, 1, 2])


def scores(name: str, model: nn.Module, group, normalizer=None) -> torch.Tensor:
    found = criterion(choices.CRITERIA, name, normalizer)
    assert isinstance(found, Importance) and found.name == name
    found.check(model, (X, Y))
    return found.prepare(model, (X, Y))(group)


def test_l1_is_the_group_mean_of_each_units_absolute_weights():
    model = mlp()
    # unit 0: (|1| + |-2| + |1| + |-1|) / 2 layers; unit 1: (3 + 1) / 2; unit 2: (2 + 2) / 2
    assert scores("l1", model, hidden_group(model)).tolist() == [2.5, 2.0, 2.0]


def test_mean_normalisation_divides_by_the_groups_mean():
    model = mlp()
    torch.testing.assert_close(scores("l1", model, hidden_group(model), "mean"), torch.tensor([15, 12, 12]) / 13)


def test_l2_sums_squares_and_ranks_differently_from_l1():
    model = mlp()
    # unit 0: (1 + 4 + 1 + 1) / 2; unit 1: (9 + 1) / 2; unit 2: (1 + 1 + 4) / 2
    assert scores("l2", model, hidden_group(model)).tolist() == [3.5, 5.0, 3.0]


def test_taylor_is_the_group_mean_of_weight_times_loss_gradient():
    model = mlp()
    w1, w2 = W1.clone().requires_grad_(), W2.clone().requires_grad_()
    loss = nn.functional.cross_entropy(torch.relu(X @ w1.T) @ w2.T, Y)
    g1, g2 = torch.autograd.grad(loss, (w1, w2))
    expected = ((W1 * g1).abs().sum(1) + (W2 * g2).abs().sum(0)) / 2
    assert expected[1] > 0 and expected[0] != expected[2]  # the batch makes the units differ
    torch.testing.assert_close(scores("taylor", model, hidden_group(model)), expected)


def test_output_norm_is_the_mean_square_of_each_units_activation():
    model = mlp()
    # ReLU(W1 x): x = (1, 1) -> (0, 3, 0); x = (2, 0) -> (2, 0, 0); mean squares over the batch
    assert scores("output_norm", model, hidden_group(model)).tolist() == [2.0, 4.5, 0.0]


def test_bn_scale_reads_gamma_and_falls_back_to_l1_without_batch_norm():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -2.0, 1.0]))
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.ones(1, 1, 1, 1))
    group = graph.get_pruning_group(model[0], tp.prune_conv_out_channels, [0, 1, 2])
    bn = criterion(choices.CRITERIA, "bn_scale")
    assert bn(group).tolist() == [0.5, 2.0, 1.0]
    plain = mlp()
    assert bn(hidden_group(plain)).tolist() == scores("l1", plain, hidden_group(plain)).tolist()
    with pytest.raises(ValueError, match="'bn_scale' ranks channels by BatchNorm scale but the model has no"):
        bn.check(plain, None)


class Residual(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.f = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.f.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class TwoBlocks(nn.Module):
    """Block 0 adds nothing; block 1 adds x turned by 90 degrees; the logits are the hidden state."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(Residual(torch.zeros(2, 2)), Residual(torch.tensor([[0.0, -1.0], [1.0, 0.0]])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


TURN = 1 - 1 / math.sqrt(2)  # 1 - cos(x, x + Rx) for a 90-degree turn R
BLOCK_SCORES = {
    "logit_cosine": [0.0, TURN],
    "block_influence": [0.0, TURN],
    # logits (1, 1) against (1, 0): KL((1/2, 1/2) || softmax(1, 0)) = log((e + 1) / 2) - 1/2
    "logit_kl": [0.0, math.log((math.e + 1) / 2) - 0.5],
    # the loss on label 0 without each block: logits (1, 1) without block 0, (1, 0) without block 1
    "perplexity": [math.log(2), math.log(1 + 1 / math.e)],
    "last": [2.0, 1.0],  # position alone: the last block goes first
}


@pytest.mark.parametrize("name", sorted(choices.BLOCK_METRICS))
def test_block_criteria_score_each_block_of_the_sequence(name):
    model, x = TwoBlocks(), torch.tensor([[1.0, 0.0]])
    found = criterion(choices.CRITERIA, name).prepare(model, (x, torch.tensor([0])))
    with torch.no_grad():
        got = found(model.blocks)
    torch.testing.assert_close(got, torch.tensor(BLOCK_SCORES[name]))
    assert isinstance(model.blocks[1], Residual)  # a block skipped to score it is put back


@pytest.mark.parametrize("name", sorted(choices.CRITERIA))
def test_a_data_driven_criterion_is_refused_without_calibration_naming_it(name):
    found = criterion(choices.CRITERIA, name)
    data_driven = {"taylor", "output_norm", "logit_kl", "logit_cosine", "block_influence", "perplexity"}
    assert found.needs_calibration == (name in data_driven)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    if found.needs_calibration:
        with pytest.raises(ValueError, match=rf"importance '{name}' is data-driven: pass calibration=\(x, y\)"):
            found.check(model, None)
    else:
        found.check(model, None)


def test_an_unknown_criterion_lists_the_valid_ones_of_its_key():
    with pytest.raises(ValueError, match=r"unknown transformer importance 'l2'; choose one of "
                                         r"\['l1', 'output_norm', 'taylor'\]"):
        criterion(choices.TRANSFORMER_IMPORTANCES, "l2")
