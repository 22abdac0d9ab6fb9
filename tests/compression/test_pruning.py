import pytest
import torch
from torch import nn

from steps.compression import pruning
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return build(ModelSpec(name="cnn", channels=[4, 8], hidden=[16]))


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("target", [0.3, 0.75, 0.9])
def test_sparsity_hits_target_exactly(scope, target):
    model = cnn()
    pruning.prune_magnitude(model, target, scope)
    total = sum(m.weight.numel() for _, m in pruning.prunable(model))
    assert abs(pruning.sparsity(model) * total - target * total) <= len(pruning.prunable(model))
    if scope == "layer":
        for _, m in pruning.prunable(model):
            assert abs(float((m.weight == 0).sum()) - target * m.weight.numel()) <= 1


def test_iterative_rounds_only_add_zeros():
    model = cnn()
    pruning.prune_magnitude(model, 0.4, "global")
    first = {n: (m.weight == 0).clone() for n, m in pruning.prunable(model)}
    pruning.prune_magnitude(model, 0.8, "global")
    for name, m in pruning.prunable(model):
        assert bool((m.weight == 0)[first[name]].all()), f"{name}: a pruned weight came back"
    assert pruning.sparsity(model) == pytest.approx(0.8, abs=1e-3)


def test_global_prunes_smallest_magnitudes():
    model = cnn()
    before = torch.cat([m.weight.detach().abs().flatten() for _, m in pruning.prunable(model)])
    pruning.prune_magnitude(model, 0.5, "global")
    after = torch.cat([m.weight.detach().flatten() for _, m in pruning.prunable(model)])
    assert before[after == 0].max() <= before[after != 0].min()


def test_masks_hold_during_finetuning_and_fold_cleanly():
    model = cnn()
    pruning.prune_magnitude(model, 0.6, "global")
    zeros = {n: (m.weight == 0).clone() for n, m in pruning.prunable(model)}
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 1, 28, 28)).sum().backward()
        opt.step()
    pruning.fold(model)
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())
    for name, m in pruning.prunable(model):
        assert bool((m.weight == 0)[zeros[name]].all())


def test_unknown_scope_and_bad_sparsity_are_refused():
    with pytest.raises(ValueError, match="unknown pruning scope 'channel'"):
        pruning.prune_magnitude(cnn(), 0.5, "channel")
    with pytest.raises(ValueError, match="sparsity must be in"):
        pruning.prune_magnitude(cnn(), 1.0, "global")
