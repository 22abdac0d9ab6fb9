"""The prune methods of a causal LM driven as the prune stage drives them (steps/prune run(): method_for, targets,
prune_round per round with fine-tuning between, sparsity, finish): DecoderPruning reaches the final Minitron shape
in two rounds and reloads with stock from_pretrained; DecoderSparsity keeps its 2:4 masks through an optimizer step;
and the settings neither can honour are refused naming the params key."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, BertConfig, BertForSequenceClassification

from steps import config
from steps.compression.families.hf import decoder
from steps.compression.families.hf.causal import HFCausalLM
from steps.compression.families.hf.decoder_method import DecoderPruning
from steps.compression.families.hf.model import HFClassifier
from steps.compression.families.hf.pruning import UnprunableError
from steps.compression.families.hf.sparse_method import DecoderSparsity, UnstructuredDecoderError
from steps.compression.training import Split, adam, cross_entropy_loss
from steps.prune import method_for
from tests.compression.lm import packed_split, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
FINETUNE = {"epochs": 1, "batch_size": 4, "lr": 1e-2}


def prune_cfg(**keys) -> config.PruneConfig:
    """params.yaml's prune section, validated as the stage reads it."""
    return config.PruneConfig(**{"target_sparsity": 0.5, "rounds": 2, "schedule": "cubic", "finetune": FINETUNE,
                                 "calibration_samples": 8, **keys})


def transformer_cfg(**transformer) -> config.PruneConfig:
    return prune_cfg(method="transformer", transformer={"heads": 0.5, "mlp": 0.5, "depth": 0.5,
                                                        "importance": "output_norm", **transformer})


@pytest.fixture
def train() -> Split:
    ids = torch.from_numpy(packed_split(documents=20, block_size=9, seed=0)["input_ids"]).long()
    return Split({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids.clone())


def finetune_step(model: HFCausalLM, train: Split) -> None:
    """One update of what the stage fine-tunes with after a round: a fresh AdamW on the next-token loss."""
    optimizer = adam(model.parameters(), FINETUNE["lr"], 0.0)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    cross_entropy_loss(train, CPU)(model, torch.arange(4)).backward()
    optimizer.step()
    model.eval()


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits if not isinstance(model, HFCausalLM) else model(ids)


@pytest.mark.parametrize("depth_metric", ["perplexity", "block_influence", "last"])
def test_two_rounds_reach_the_final_shape_and_stock_from_pretrained_reloads_it(tmp_path, train, depth_metric):
    model = HFCausalLM(tiny_llama())
    before = decoder.shape_of(model.hf)
    assert (before.layers, before.heads, before.kv_heads, before.intermediate) == (2, 4, 2, 64)
    method = method_for(model, transformer_cfg(depth_metric=depth_metric))
    assert isinstance(method, DecoderPruning)
    targets = method.targets()
    assert len(targets) == 2 and 0 < targets[0] < targets[1] == 0.5  # cubic: most of it in the first round
    sparsities = []
    for round_no, _ in enumerate(targets, start=1):
        method.prune_round(model, round_no, train, CPU)
        finetune_step(model, train)
        sparsities.append(method.sparsity(model))
    method.finish(model)
    after = decoder.shape_of(model.hf)
    assert after == decoder.DecoderShape(layers=1, heads=2, kv_heads=1, intermediate=32, hidden=32)
    assert after.heads % after.kv_heads == 0 and after.heads // after.kv_heads == before.heads // before.kv_heads
    assert 0 < sparsities[0] <= sparsities[1] < 1  # parameters really gone, more after the second round
    decoder.check_describable(model.hf)
    model.hf.save_pretrained(tmp_path)
    stock = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True, use_safetensors=True).eval()
    assert stock.config.num_key_value_heads == 1 and stock.config.num_hidden_layers == 1
    ids = train.x["input_ids"][:3]
    assert torch.allclose(logits(stock, ids), logits(model.eval(), ids), atol=1e-5)


def test_a_classifiers_depth_metric_is_refused_naming_the_key():
    cfg = transformer_cfg(depth_metric="logit_kl")  # valid for a ViT or an encoder: the config accepts it
    with pytest.raises(UnprunableError, match=r"prune\.transformer\.depth_metric 'logit_kl'.*perplexity"):
        method_for(HFCausalLM(tiny_llama()), cfg)


def test_global_heads_are_refused_naming_the_key():
    with pytest.raises(UnprunableError, match=r"prune\.transformer\.global_heads"):
        method_for(HFCausalLM(tiny_llama()), transformer_cfg(depth_metric="last", global_heads=True))


def test_wanda_two_of_four_holds_through_fine_tuning_and_folds_into_plain_weights(train):
    model = HFCausalLM(tiny_llama())
    method = method_for(model, prune_cfg(method="wanda", n_m="2:4"))
    assert isinstance(method, DecoderSparsity) and method.targets() == [0.5, 0.5]
    layers = method.layers
    assert layers and all(name.startswith("model.layers.") for name in layers)
    for round_no, _ in enumerate(method.targets(), start=1):
        method.prune_round(model, round_no, train, CPU)
        masks = {name: m.weight_mask.clone() for name, m in layers.items()}
        kept_before = {name: m.weight_orig.detach().clone() for name, m in layers.items()}
        finetune_step(model, train)
        for name, m in layers.items():
            assert torch.equal(m.weight_mask, masks[name])
            moved = (m.weight_orig.detach() != kept_before[name]) & masks[name].bool()
            assert moved.any(), name  # the step did update the kept weights
            model(train.x["input_ids"][:1])  # the forward recomputes weight from weight_orig and the mask
            assert not m.weight[~masks[name].bool()].any(), name
    method.finish(model)
    for name, m in layers.items():
        assert not hasattr(m, "weight_orig") and not hasattr(m, "weight_mask") and not m._forward_pre_hooks, name
        zeros_per_group = (m.weight == 0).reshape(m.out_features, -1, 4).sum(-1)
        assert bool((zeros_per_group >= 2).all()), name
        assert torch.equal(m.weight != 0, masks[name].bool() & (m.weight != 0))  # the last round's zeros stayed
    assert method.sparsity(model) >= 0.5
    assert bool(model.hf.lm_head.weight.all()) and bool(model.hf.model.embed_tokens.weight.all())  # not pruned
    assert not any("_orig" in key or "_mask" in key for key in model.hf.state_dict())


def test_unstructured_wanda_follows_the_schedule_row_by_row(train):
    model = HFCausalLM(tiny_llama())
    method = method_for(model, prune_cfg(method="wanda", target_sparsity=0.6, schedule="linear"))
    assert method.targets() == pytest.approx([0.3, 0.6])
    shapes = [m.weight.shape for m in method.layers.values()]
    for round_no, target in enumerate(method.targets(), start=1):
        method.prune_round(model, round_no, train, CPU)
        # every row of every decoder Linear loses floor(target x its inputs) weights (sparsity.masks)
        removed = sum(rows * math.floor(target * inputs) for rows, inputs in shapes)
        assert method.sparsity(model) == pytest.approx(removed / sum(r * i for r, i in shapes), abs=1e-12)
    method.finish(model)
    assert 0.55 < method.sparsity(model) <= 0.6


def test_sparsity_on_a_classifier_is_refused_naming_the_method():
    torch.manual_seed(0)
    bert = HFClassifier(BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=40, num_labels=3))).eval()
    with pytest.raises(UnstructuredDecoderError, match=r"prune\.method wanda.*causal language model"):
        method_for(bert, prune_cfg(method="wanda", n_m="2:4"))
    with pytest.raises(UnstructuredDecoderError, match=r"prune\.method magnitude"):
        method_for(bert, prune_cfg(method="magnitude"))


@pytest.mark.parametrize(("keys", "why"), [
    ({"method": "wanda", "n_m": "4:2"}, "0 < n < m"),
    ({"method": "wanda", "n_m": "0:4"}, "0 < n < m"),
    ({"method": "structured", "n_m": "2:4"}, "not 'structured'"),
    ({"method": "wanda", "n_m": "2-4"}, "pattern"),
])
def test_bad_n_m_is_refused_naming_the_key(keys, why):
    with pytest.raises(ValidationError, match=r"n_m") as refused:
        prune_cfg(**keys)
    assert why in str(refused.value)


def test_a_heads_fraction_that_removes_no_whole_group_is_refused_naming_the_key():
    with pytest.raises(UnprunableError, match=r"prune.transformer.heads 0.2 removes no whole key-value group of 2"):
        DecoderPruning(HFCausalLM(tiny_llama()), transformer_cfg(heads=0.2, mlp=0.0, depth=0.0))


def test_calibration_blocks_are_a_seeded_sample_of_the_whole_split(train):
    from steps.compression.prune_method import calibration_rows

    rows = calibration_rows(train, 5)
    assert torch.equal(rows, calibration_rows(train, 5)) and torch.equal(rows, rows.sort().values)
    assert not torch.equal(rows, torch.arange(5)) and len(set(rows.tolist())) == 5


def test_n_m_is_refused_for_a_model_pruned_by_single_weights():
    from steps.compression.pruning import MagnitudePruning

    with pytest.raises(ValueError, match=r"prune.n_m '2:4' prunes a causal language model's decoder n:m"):
        MagnitudePruning(torch.nn.Linear(4, 4), prune_cfg(method="magnitude", n_m="2:4"))
