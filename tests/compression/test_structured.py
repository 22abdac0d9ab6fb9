import copy

import pytest
import torch
from torch import nn

from steps.compression import measure
from steps.compression.choices import IMPORTANCES
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec
from steps.compression.structured import (
    channel_keep_amounts,
    layer_widths,
    prune_channels,
    target_widths,
)

X = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 3, 7, 9])
SPECS = {
    "mlp": ModelSpec(name="mlp", hidden=[16, 12], batch_norm=False),
    "cnn": ModelSpec(name="cnn", channels=[8, 16], hidden=[16]),
    "resnet": ModelSpec(name="resnet", channels=[8, 16], hidden=[16]),
}


def model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build(SPECS[name]).eval()


def widths(m: nn.Module) -> list[int]:
    """Output channels of every Conv2d/Linear, in order."""
    return [layer.weight.shape[0] for layer in m.modules() if isinstance(layer, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_pruning_makes_every_architecture_smaller(name):
    m = model(name)
    keys, params, macs = list(m.state_dict()), measure.parameters(m), measure.macs(m, X[:1])
    before = widths(m)
    prune_channels(m, X[:1], 0.5, "l1")
    assert measure.parameters(m) < 0.5 * params
    assert measure.macs(m, X[:1]) < 0.5 * macs
    assert m(X).shape == (4, 10)
    assert list(m.state_dict()) == keys
    # every hidden layer halves, the output layer keeps its 10 classes
    assert widths(m) == [w // 2 for w in before[:-1]] + [10]


@pytest.mark.parametrize("importance", sorted(IMPORTANCES))
def test_every_importance_prunes_a_resnet(importance):
    m = model("resnet")
    prune_channels(m, X[:1], 0.25, importance, calibration=(X, Y))
    # stem + block convs 8 -> 6 and 16 -> 12 (the shortcut is coupled to its block), hidden 16 -> 12
    assert widths(m) == [6, 6, 6, 12, 12, 12, 12, 10]
    assert m(X).shape == (4, 10)
    assert all(p.grad is None for p in m.parameters())  # calibration gradients are not left behind


def test_taylor_ranks_by_gradient_times_weight():
    m = nn.Sequential(nn.Flatten(), nn.Linear(784, 4), nn.ReLU(), nn.Linear(4, 10))
    with torch.no_grad():  # neuron 2 has the largest input weights but cannot change the loss
        m[1].weight[2] *= 10
        m[3].weight[:, 2] = 0
    kept = m[1].weight[[0, 1, 3]].clone()
    prune_channels(m, X[:1], 0.25, "taylor", calibration=(X, Y))
    assert torch.equal(m[1].weight, kept)


def test_data_driven_importance_needs_a_calibration_batch():
    with pytest.raises(ValueError, match="'taylor'.*calibration=\\(x, y\\)"):
        prune_channels(model("cnn"), X[:1], 0.5, "taylor")


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="'fpgm'.*bn_scale.*l1.*l2.*taylor"):
        prune_channels(model("cnn"), X[:1], 0.5, "fpgm")
    for amount in (1.0, -0.1):
        with pytest.raises(ValueError, match="amount must be in"):
            prune_channels(model("cnn"), X[:1], amount, "l1")
    with pytest.raises(ValueError, match="'bn_scale'.*no BatchNorm"):
        prune_channels(model("mlp"), X[:1], 0.5, "bn_scale")


def test_removing_dead_neurons_leaves_outputs_unchanged():
    m = model("mlp")  # Linear(784,16) ReLU Linear(16,12) ReLU Linear(12,10)
    dead = {1: [3, 9, 12, 14], 3: [0, 5, 7]}  # layer index -> neurons with no input, bias or output
    with torch.no_grad():
        for layer, idx in dead.items():
            m[layer].weight[idx] = 0
            m[layer].bias[idx] = 0
            m[layer + 2].weight[:, idx] = 0
    expected = m(X)
    alive = [i for i in range(16) if i not in dead[1]]
    kept = m[1].weight[alive].clone()
    prune_channels(m, X[:1], 0.25, "l1")
    assert widths(m) == [12, 9, 10]
    assert torch.equal(m[1].weight, kept)
    torch.testing.assert_close(m(X), expected, rtol=0, atol=1e-6)


def test_removing_silenced_conv_channels_leaves_outputs_unchanged():
    m = build(ModelSpec(name="cnn", channels=[4, 8], hidden=[])).eval()
    with torch.no_grad():  # BN gamma = beta = 0: the channel outputs 0 whatever its filter
        for bn, idx in ((m.features[1], [2]), (m.features[5], [1, 6])):
            bn.weight[idx] = 0
            bn.bias[idx] = 0
    expected = m(X)
    prune_channels(m, X[:1], 0.25, "bn_scale")
    assert widths(m) == [3, 6, 10]
    assert bool((m.features[1].weight != 0).all()) and bool((m.features[5].weight != 0).all())
    torch.testing.assert_close(m(X), expected, rtol=0, atol=1e-5)


def test_global_pruning_takes_more_from_the_weakest_layer():
    m = model("mlp")
    with torch.no_grad():  # half the first hidden layer is nearly dead
        m[1].weight[:8] *= 1e-3
        m[3].weight[:, :8] *= 1e-3
    local, global_ = copy.deepcopy(m), m
    prune_channels(local, X[:1], 0.25, "l1")
    prune_channels(global_, X[:1], 0.25, "l1", global_pruning=True)
    assert widths(local) == [12, 9, 10]
    # int(28 * 0.75) = 21 channels kept in all: the 7 removed are all near-dead ones
    assert widths(global_) == [9, 12, 10]


def test_channel_keep_amounts_golden_values():
    assert channel_keep_amounts([0.2, 0.4, 0.5]) == pytest.approx([0.2, 0.25, 1 / 6])
    assert channel_keep_amounts([0.5, 0.5]) == pytest.approx([0.5, 0.0])
    with pytest.raises(ValueError, match="non-decreasing"):
        channel_keep_amounts([0.4, 0.2])
    with pytest.raises(ValueError, match="non-decreasing"):
        channel_keep_amounts([1.0])


def test_rounds_of_keep_amounts_reach_the_cumulative_schedule():
    m = build(ModelSpec(name="mlp", hidden=[60], batch_norm=False))
    seen = []
    for amount in channel_keep_amounts([0.2, 0.4, 0.5]):
        prune_channels(m, X[:1], amount, "l2")
        seen.append(widths(m)[0])
    assert seen == [48, 36, 30]


def test_target_widths_round_down_to_multiples_from_the_original_widths():
    m = build(ModelSpec(name="cnn", channels=[32, 64, 128], hidden=[256]))
    original = layer_widths(m)
    assert list(original.values()) == [32, 64, 128, 256]  # the output layer is not prunable
    assert list(target_widths(original, 0.25, 16).values()) == [16, 48, 96, 192]
    assert list(target_widths(original, 0.25).values()) == [24, 48, 96, 192]
    assert list(target_widths(original, 0.95, 16).values()) == [16, 16, 16, 16]  # never below one block
    with pytest.raises(ValueError, match="round_to"):
        target_widths(original, 0.5, 0)


def test_prune_channels_to_given_widths_keeps_the_others_whole():
    m = model("cnn")
    layers = list(layer_widths(m))
    prune_channels(m, X[:1], 0.5, "l1", widths={layers[0]: 4, layers[1]: 16, layers[2]: 8})
    assert widths(m) == [4, 16, 8, 10]  # the second conv was asked for all of its 16: untouched, not halved
    assert m(X).shape == (4, 10)
