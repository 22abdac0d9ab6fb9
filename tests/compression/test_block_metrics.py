"""The block metrics Minitron compares depth cuts by (criteria/blocks.py): `LossOnRemoval`, the loss with one block
skipped (cross-entropy on a classifier's labels, the next-token loss of a causal LM, checked against a model with
the layer really deleted), and `LastBlocks`, the naive cut; both chosen by name from prune.transformer.depth_metric."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.nn import functional as F

from steps import config
from steps.compression import choices
from steps.compression.criteria import criterion
from steps.compression.criteria.blocks import LastBlocks, LossOnRemoval
from steps.compression.families import build
from steps.compression.families.hf import decoder
from steps.compression.families.hf.causal import HFCausalLM
from steps.compression.families.spec import ModelSpec
from steps.compression.transformer_depth import block_importance, prune_depth
from tests.compression.lm import VOCAB, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = 4


class Scale(nn.Module):
    """A residual block h + c * h: it multiplies the hidden state by 1 + c."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.c * h


class Residual(nn.Module):
    """Inputs one-hot of their class; the logits are the last hidden state. Blocks x4, x1 (idle), x0.5: the first
    makes the model confident, the last takes half of that away, so removing it lowers the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(Scale(3.0), Scale(0.0), Scale(-0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def one_hot_batch() -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.tensor([0, 1, 2, 3, 1, 2])
    return F.one_hot(y, CLASSES).float(), y


def ce_of_margin(a: float) -> float:
    """The cross-entropy of logits a at the true class and 0 at the CLASSES - 1 others."""
    return math.log(math.exp(a) + CLASSES - 1) - a


def scores_of(metric: str, model: nn.Module, blocks: nn.Module, calibration) -> torch.Tensor:
    scorer = criterion(choices.BLOCK_METRICS, metric)
    scorer.check(model, calibration)
    with torch.no_grad():
        return scorer.prepare(model, calibration)(blocks)


def test_loss_on_removal_of_a_classifier_is_the_cross_entropy_without_each_block():
    model, (x, y) = Residual(), one_hot_batch()
    blocks = list(model.blocks)
    scores = scores_of("perplexity", model, model.blocks, (x, y))
    # without block 0: x1 x0.5; without block 1 (idle): x4 x0.5, the full model's; without block 2: x4
    expected = torch.tensor([ce_of_margin(0.5), ce_of_margin(2.0), ce_of_margin(4.0)])
    assert torch.allclose(scores, expected, atol=1e-6)
    assert math.isclose(scores[1].item(), F.cross_entropy(model(x), y).item(), rel_tol=1e-6)
    assert list(model.blocks) == blocks  # every block is put back
    assert scores.argmin() == 2  # the block that hurts goes first, not the idle one


def test_loss_on_removal_of_a_vit_matches_a_copy_without_the_block():
    model = build(ModelSpec(name="vit", embed_dim=16, depth=3, heads=4, mlp_ratio=2.0)).eval()
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 1, 28, 28, generator=generator), torch.arange(8) % 10
    scores = block_importance(model, (x, y), "perplexity")
    for i in range(3):
        shallower = copy.deepcopy(model)
        shallower.blocks = nn.Sequential(*(b for j, b in enumerate(shallower.blocks) if j != i))
        with torch.no_grad():
            assert math.isclose(scores[i].item(), F.cross_entropy(shallower(x), y).item(), rel_tol=1e-5)
    assert len(set(scores.tolist())) == 3  # three different models: the scores tell them apart


def test_loss_on_removal_needs_a_calibration_batch():
    scorer = criterion(choices.BLOCK_METRICS, "perplexity")
    assert scorer.needs_calibration
    with pytest.raises(ValueError, match="'perplexity' is data-driven"):
        scorer.check(Residual(), None)


def test_loss_on_removal_of_a_causal_lm_is_the_next_token_loss_without_the_layer():
    model = HFCausalLM(tiny_llama())
    ids = torch.randint(1, VOCAB, (4, 10), generator=torch.Generator().manual_seed(5))
    x = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    layers = model.hf.model.layers
    layers_before = list(layers)
    scores = scores_of("perplexity", model, layers, (x, ids))
    assert scores.shape == (2,)
    for i in range(2):
        shallower = copy.deepcopy(model)
        decoder.drop_layers(shallower.hf, [i])
        assert shallower.hf.config.num_hidden_layers == 1
        with torch.no_grad():
            logits = shallower(**x)
        by_hand = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        assert math.isclose(scores[i].item(), by_hand.item(), rel_tol=1e-5)
    with torch.no_grad():
        full = F.cross_entropy(model(**x)[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    assert not any(math.isclose(s, full.item(), rel_tol=1e-6) for s in scores.tolist())  # a layer was skipped
    assert list(model.hf.model.layers) == layers_before  # every layer is put back


def test_last_blocks_scores_earlier_blocks_higher_without_data():
    model = Residual()
    scores = scores_of("last", model, model.blocks, None)
    assert not criterion(choices.BLOCK_METRICS, "last").needs_calibration
    assert scores.tolist() == [3.0, 2.0, 1.0]
    assert scores_of("last", model, nn.Sequential(*[Scale(0.0)] * 5), None).tolist() == [5.0, 4.0, 3.0, 2.0, 1.0]


def test_last_cuts_a_vits_last_blocks():
    model = build(ModelSpec(name="vit", embed_dim=16, depth=3, heads=4, mlp_ratio=2.0)).eval()
    first, second = model.blocks[0], model.blocks[1]
    prune_depth(model, 0.34, None, "last")
    assert list(model.blocks) == [first, second]


@pytest.mark.parametrize(("name", "kind"), [("perplexity", LossOnRemoval), ("last", LastBlocks)])
def test_both_are_depth_metrics_by_name(name, kind):
    assert choices.BLOCK_METRICS.resolve(name) is kind
    assert choices.CRITERIA.resolve(name) is kind
    cfg = config.PruneConfig(method="transformer", target_sparsity=0.5, rounds=1,
                             finetune={"epochs": 1, "batch_size": 4, "lr": 1e-3},
                             transformer={"depth": 0.5, "depth_metric": name})
    assert cfg.transformer.depth_metric == name


def test_an_unknown_depth_metric_is_refused_listing_the_metrics():
    with pytest.raises(ValidationError, match="depth_metric") as refused:
        config.PruneConfig(method="transformer", target_sparsity=0.5, rounds=1,
                           finetune={"epochs": 1, "batch_size": 4, "lr": 1e-3},
                           transformer={"depth": 0.5, "depth_metric": "ppl"})
    assert "perplexity" in str(refused.value) and "last" in str(refused.value)
    with pytest.raises(ValueError, match=r"unknown block importance 'ppl'.*'last'.*'perplexity'"):
        choices.BLOCK_METRICS.resolve("ppl")
