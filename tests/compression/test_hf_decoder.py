"""Minitron-style pruning of Llama-style causal LMs (issue 27): KV groups, MLP neurons, hidden channels and layers
cut by hand on a tiny Llama (and Qwen2, whose q/k/v have biases and whose config lists layer_types), the config
updated so that stock AutoModelForCausalLM.from_pretrained rebuilds the same model; importance criteria; plans
that break the grouped-query shape refused by key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from steps.compression.families.hf import decoder
from steps.compression.families.hf.decoder import (
    DecoderShape, UnprunableError, check_shape, drop_layers, keep_hidden_channels, keep_kv_groups, keep_mlp_neurons,
    target_shape)
from steps.compression.families.hf.decoder_importance import layer_scores, lm_loss, width_scores
from steps.compression.families.hf.decoder_prune import prune_decoder

SIZES = {"vocab_size": 96, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}


def llama(**keys) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**SIZES, **keys)).eval()


def qwen2(**keys) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(**SIZES, **keys)).eval()


def ids(rows: int = 6, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, SIZES["vocab_size"], (rows, length), generator=torch.Generator().manual_seed(seed))


def logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=x, use_cache=False).logits


def reloaded(model, folder: Path):
    """`model` saved and read back by stock transformers alone."""
    model.save_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(folder).eval()


def assert_reloads(model, folder: Path) -> None:
    x = ids(2, 10, seed=5)
    assert torch.allclose(logits(reloaded(model, folder), x), logits(model, x), atol=1e-5)


def test_unpruned_model_reloads_with_identical_logits(tmp_path):
    model = llama()
    assert_reloads(model, tmp_path)


def test_keeping_kv_groups_cuts_their_heads_and_reloads(tmp_path):
    model = llama()
    zeroed = copy.deepcopy(model)
    kept = {0: [1], 1: [0], 2: [1], 3: [0]}  # each layer its own group, one of two
    keep_kv_groups(model, kept)
    config = model.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (2, 1, 8)
    attention = model.model.layers[0].self_attn
    assert tuple(attention.q_proj.weight.shape) == (16, 32)
    assert tuple(attention.k_proj.weight.shape) == tuple(attention.v_proj.weight.shape) == (8, 32)
    assert tuple(attention.o_proj.weight.shape) == (32, 16)
    # A group's heads (2 of 8 channels each) leave: zeroing their o_proj columns gives the same logits.
    for i, groups in kept.items():
        gone = 1 - groups[0]
        with torch.no_grad():
            zeroed.model.layers[i].self_attn.o_proj.weight[:, gone * 16:(gone + 1) * 16] = 0
    x = ids()
    assert torch.allclose(logits(model, x), logits(zeroed, x), atol=1e-5)
    assert_reloads(model, tmp_path)


def test_keeping_mlp_neurons_matches_zeroed_down_columns_and_reloads(tmp_path):
    model = llama()
    zeroed = copy.deepcopy(model)
    kept = [list(range(0, 64, 2)), list(range(1, 64, 2)), list(range(32)), list(range(32, 64))]
    keep_mlp_neurons(model, kept)
    assert model.config.intermediate_size == 32
    mlp = model.model.layers[1].mlp
    assert tuple(mlp.gate_proj.weight.shape) == tuple(mlp.up_proj.weight.shape) == (32, 32)
    assert tuple(mlp.down_proj.weight.shape) == (32, 32)
    for layer, neurons in zip(zeroed.model.layers, kept, strict=True):
        gone = [n for n in range(64) if n not in neurons]
        with torch.no_grad():
            layer.mlp.down_proj.weight[:, gone] = 0
    x = ids()
    assert torch.allclose(logits(model, x), logits(zeroed, x), atol=1e-5)
    assert_reloads(model, tmp_path)


@pytest.mark.parametrize("tie", [False, True])
def test_keeping_hidden_channels_cuts_the_stream_everywhere_and_reloads(tmp_path, tie):
    model = llama(tie_word_embeddings=tie)
    keep_hidden_channels(model, list(range(4, 28)))
    config = model.config
    assert (config.hidden_size, config.head_dim, config.num_attention_heads) == (24, 8, 4)
    layer = model.model.layers[2]
    assert tuple(model.model.embed_tokens.weight.shape) == (96, 24)
    assert tuple(model.lm_head.weight.shape) == (96, 24)
    assert tuple(layer.self_attn.q_proj.weight.shape) == (32, 24)
    assert tuple(layer.self_attn.k_proj.weight.shape) == (16, 24)
    assert tuple(layer.self_attn.o_proj.weight.shape) == (24, 32)
    assert tuple(layer.mlp.down_proj.weight.shape) == (24, 64)
    assert tuple(layer.input_layernorm.weight.shape) == tuple(model.model.norm.weight.shape) == (24,)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tie
    assert_reloads(model, tmp_path)


def test_dropping_layers_renumbers_the_cache_slots_so_cached_generation_matches(tmp_path):
    model = llama()
    full = copy.deepcopy(model)
    drop_layers(model, [0, 2])
    assert model.config.num_hidden_layers == 2 and len(model.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]
    assert model.model.layers[0].self_attn.q_proj.weight.equal(full.model.layers[1].self_attn.q_proj.weight)
    prompt = ids(2, 5, seed=3)
    with torch.inference_mode():
        cached = model.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=True, pad_token_id=0)
        uncached = model.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=False, pad_token_id=0)
    assert cached.shape == (2, 13)
    assert cached.equal(uncached)
    assert_reloads(model, tmp_path)


def test_qwen2_drops_its_layer_types_and_keeps_q_biases_per_group(tmp_path):
    model = qwen2(layer_types=["full_attention", "sliding_attention", "full_attention", "sliding_attention"],
                  use_sliding_window=True, sliding_window=4)
    drop_layers(model, [1])
    assert model.config.layer_types == ["full_attention", "full_attention", "sliding_attention"]
    bias = model.model.layers[0].self_attn.q_proj.bias.detach().clone()
    keep_kv_groups(model, [1])
    assert model.model.layers[0].self_attn.q_proj.bias.equal(bias[16:])
    assert_reloads(model, tmp_path)


def test_plan_rounds_heads_by_kv_group_and_refuses_a_broken_ratio():
    model = llama()
    # a third of the groups is not one of two: rounded to whole groups, never to 3 heads over 2 KV heads
    assert target_shape(model, heads=0.3) == DecoderShape(layers=4, heads=2, kv_heads=1, intermediate=64, hidden=32)
    assert target_shape(model, heads=0.2).heads == 4
    with pytest.raises(UnprunableError, match=r"prune\.transformer\.heads.*num_attention_heads"):
        check_shape(model, DecoderShape(layers=4, heads=3, kv_heads=2, intermediate=64, hidden=32))
    with pytest.raises(UnprunableError, match=r"prune\.transformer\.heads.*same number"):
        keep_kv_groups(model, {0: [0], 1: [0, 1], 2: [0], 3: [1]})
    with pytest.raises(UnprunableError, match=r"prune\.transformer\.mlp.*\[0, 1\)"):
        target_shape(model, mlp=1.0)


def test_plan_rounds_the_hidden_width_to_what_a_llama_config_accepts():
    # LlamaConfig refuses hidden_size % num_attention_heads != 0, on save and on load
    shape = target_shape(llama(), hidden=0.2)  # round(32 * 0.8) = 26, not a multiple of 4 heads
    assert shape.hidden == 24


def test_block_importance_is_one_minus_cosine_of_a_layers_input_and_output():
    model, x = llama(), ids()
    scores = layer_scores(model, x, "block_importance", batch_size=4)  # two batches: 4 and 2 rows
    with torch.inference_mode():
        states = model(input_ids=x, output_hidden_states=True, use_cache=False).hidden_states
    by_hand = (1 - F.cosine_similarity(states[1], states[2], dim=-1)).mean()
    assert scores.shape == (4,)
    assert torch.isclose(scores[1], by_hand, atol=1e-5)


def test_perplexity_is_the_loss_of_the_model_without_the_layer():
    model, x = llama(), ids()
    scores = layer_scores(model, x, "perplexity", batch_size=3)
    shallower = copy.deepcopy(model)
    drop_layers(shallower, [2])
    with torch.inference_mode():
        assert torch.isclose(scores[2], lm_loss(shallower, x), atol=1e-5)


def test_last_drops_the_last_layers():
    model = llama()
    result = prune_decoder(model, None, layers=0.5, depth_metric="last")
    assert result["layers_removed"] == [2, 3]
    assert model.config.num_hidden_layers == 2


def test_activation_scores_a_silenced_group_and_neuron_lowest():
    model = llama()
    with torch.no_grad():  # group 0 of layer 1 attends to nothing: its v rows are zero
        model.model.layers[1].self_attn.v_proj.weight[:8] = 0
        model.model.layers[1].mlp.up_proj.weight[5] = 0  # neuron 5 of layer 1 never fires
    scores = width_scores(model, ids(), "activation", batch_size=4)
    assert scores.kv_groups[1][0] == 0 < scores.kv_groups[1][1]
    assert scores.neurons[1][5] == 0 == scores.neurons[1].min()
    assert scores.hidden.shape == (32,) and bool((scores.hidden > 0).all())


@pytest.mark.parametrize("importance", ["activation", "l1", "taylor"])
def test_prune_decoder_on_every_axis_reloads_with_the_same_logits(tmp_path, importance):
    model = llama()
    result = prune_decoder(model, ids(), heads=0.5, mlp=0.25, hidden=0.25, layers=0.25, importance=importance,
                           depth_metric="block_importance", batch_size=4)
    assert result["after"] == {"layers": 3, "heads": 2, "kv_heads": 1, "intermediate": 48, "hidden": 24}
    assert len(result["layers_removed"]) == 1 and len(result["hidden_kept"]) == 24
    assert all(len(groups) == 1 for groups in result["kv_groups_kept"])
    assert model.model.embed_tokens.weight.grad is None  # the calibration gradients are cleared
    assert_reloads(model, tmp_path)


def test_an_unknown_importance_is_refused_by_name():
    with pytest.raises(ValueError, match="prune.transformer.importance.*activation"):
        width_scores(llama(), ids(), "snip")
    with pytest.raises(UnprunableError, match="no Linear at model.layers|Llama layout"):
        decoder.check_layout(torch.nn.Linear(2, 2))
