"""Each prune.method through the contract the prune stage's loop calls: targets, prune_round, sparsity, finish."""

import pytest
import torch
from torch import nn

from steps import config
from steps.compression import choices, measure
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec
from steps.compression.prune_method import PruneMethod
from steps.compression.training import Split

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = Split(torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 10)
CPU = torch.device("cpu")
FINETUNE = {"epochs": 1, "batch_size": 8, "lr": 0.01}


def prune_cfg(**raw) -> config.PruneConfig:
    return config.PruneConfig.model_validate({"target_sparsity": 0.5, "rounds": 2, "finetune": FINETUNE, **raw})


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return build(ModelSpec(name="cnn", channels=[8, 16], hidden=[32])).eval()


def run_rounds(model: nn.Module, cfg: config.PruneConfig) -> tuple[PruneMethod, list[float]]:
    method = choices.PRUNE_METHODS.resolve(cfg.method)(model, cfg)
    measured = []
    for round_no in range(1, len(method.targets()) + 1):
        method.prune_round(model, round_no, TRAIN, CPU)
        measured.append(method.sparsity(model))
    method.finish(model)
    return method, measured


def test_magnitude_zeroes_weights_to_each_rounds_target_and_folds_the_masks():
    model = cnn()
    method, measured = run_rounds(model, prune_cfg(method="magnitude", schedule="linear", target_sparsity=0.6))
    assert method.targets() == pytest.approx([0.3, 0.6])
    assert measured == pytest.approx([0.3, 0.6], abs=1e-3)
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())
    assert method.sparsity(model) == pytest.approx(0.6, abs=1e-3)


def test_structured_cuts_rounded_widths_from_the_original_ones_and_counts_parameters_gone():
    model = cnn()
    original = measure.parameters(model)
    method, _ = run_rounds(model, prune_cfg(method="structured", scope="layer", schedule="linear", target_sparsity=0.3,
                                            round_to=4))
    # 70% of 8/16 channels and 32 neurons, rounded down to multiples of 4 from the original widths
    assert [model.features[0].out_channels, model.features[4].out_channels, model.classifier[1].out_features] == \
        [4, 8, 20]
    assert method.sparsity(model) == pytest.approx(1 - measure.parameters(model) / original)


def test_transformer_targets_are_the_largest_fraction_each_round_reaches():
    torch.manual_seed(0)
    model = build(ModelSpec(name="vit", embed_dim=16, depth=2, heads=4, mlp_ratio=2.0)).eval()
    cfg = prune_cfg(method="transformer", schedule="linear", transformer={"heads": 0.5, "mlp": 0.25})
    method, _ = run_rounds(model, cfg)
    assert method.targets() == pytest.approx([0.25, 0.5])
    assert [b.attn.num_heads for b in model.blocks] == [2, 2] and [b.mlp.fc1.out_features for b in model.blocks] == \
        [24, 24]
