"""One-shot Wanda and magnitude sparsity on a tiny seeded Llama: the scores against norms computed by hand from
hooked inputs, exact per-row counts of the lowest scores, 2:4 groups, the two methods parting where input norms
differ, embeddings and lm_head untouched, a stock from_pretrained reload that keeps the zeros, the report's counts
and size arithmetic, and each bad value refused by name before any weight changes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from steps.compression import sparsity as sp

LAYER = "model.layers.0.mlp.down_proj"


@pytest.fixture
def model(one_thread) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, 96, (5, 7), generator=torch.Generator().manual_seed(1))


def hand_norm(model: LlamaForCausalLM, ids: torch.Tensor, name: str) -> torch.Tensor:
    """sqrt(sum over every token of x^2) from the inputs one hook keeps whole, the full model run at once."""
    seen = []
    handle = model.get_submodule(name).register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    with torch.no_grad():
        model(input_ids=ids)
    handle.remove()
    x = seen[0].reshape(-1, seen[0].shape[-1])
    return torch.sqrt((x ** 2).sum(dim=0))


def test_decoder_linears_only(model):
    names = sp.linears(model)
    assert len(names) == 14  # q k v o gate up down, two layers
    assert not any("embed" in n or "lm_head" in n for n in names)


def test_wanda_scores_from_hooked_inputs(model, ids):
    norms = sp.input_norms(model, ids, batch_size=2)  # 5 rows in batches of 2, 2, 1
    expected = hand_norm(model, ids, LAYER)
    torch.testing.assert_close(norms[LAYER], expected, rtol=1e-5, atol=1e-6)
    weight = model.get_submodule(LAYER).weight
    torch.testing.assert_close(sp.wanda_scores(weight, norms[LAYER]), weight.detach().abs() * expected[None, :],
                               rtol=1e-5, atol=1e-6)
    assert model.training is False


@pytest.mark.parametrize("method", ["wanda", "magnitude"])
def test_each_row_loses_its_lowest_scores(model, ids, method):
    dense = copy.deepcopy(model)
    norms = sp.input_norms(dense, ids)
    sp.sparsify(model, method, sparsity=0.3, calibration_ids=ids)
    for name, layer in sp.linears(model).items():
        before = dense.get_submodule(name).weight.detach()
        scores = before.abs() * norms[name][None, :] if method == "wanda" else before.abs()
        removed = layer.weight == 0
        assert (removed.sum(dim=1) == math.floor(0.3 * layer.in_features)).all(), name
        for row in range(scores.shape[0]):
            assert scores[row][removed[row]].max() <= scores[row][~removed[row]].min(), (name, row)
        torch.testing.assert_close(layer.weight[~removed], before[~removed])  # kept weights unchanged


@pytest.mark.parametrize("method", ["wanda", "magnitude"])
def test_two_of_every_four(model, ids, method):
    report = sp.sparsify(model, method, n_m=(2, 4), calibration_ids=ids)
    for name, layer in sp.linears(model).items():
        groups = (layer.weight != 0).reshape(layer.out_features, -1, 4).sum(dim=-1)
        assert (groups == 2).all(), name
    assert report["total"]["sparsity"] == 0.5


def test_masks_part_where_input_norms_differ():
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    norm = torch.tensor([10.0, 1.0, 1.0, 1.0])  # the smallest weight feeds the loudest input
    wanda = sp.masks(sp.wanda_scores(weight, norm), sparsity=0.5)
    magnitude = sp.masks(sp.magnitude_scores(weight), sparsity=0.5)
    assert wanda.tolist() == [[True, False, False, True]]
    assert magnitude.tolist() == [[False, False, True, True]]


def test_wanda_keeps_a_loud_input_that_magnitude_prunes(model, ids):
    # q_proj's column 0 holds small weights (below each row's median) fed by an input that input_layernorm
    # scales up 100x: small by magnitude, large by Wanda's score
    with torch.no_grad():
        model.model.layers[0].input_layernorm.weight[0] = 100.0
        model.model.layers[0].self_attn.q_proj.weight[:, 0] = 1e-3
    wanda, magnitude = model, copy.deepcopy(model)
    sp.sparsify(wanda, "wanda", sparsity=0.5, calibration_ids=ids)
    sp.sparsify(magnitude, "magnitude", sparsity=0.5)
    q_wanda = wanda.model.layers[0].self_attn.q_proj.weight
    q_magnitude = magnitude.model.layers[0].self_attn.q_proj.weight
    assert (q_wanda[:, 0] != 0).all()
    assert (q_magnitude[:, 0] == 0).all()


def test_outside_layers_untouched_and_stock_reload_keeps_zeros(model, ids, tmp_path):
    before = copy.deepcopy(model.state_dict())
    sp.sparsify(model, "wanda", sparsity=0.5, calibration_ids=ids)
    after = model.state_dict()
    for key in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                "model.layers.0.input_layernorm.weight"):
        assert torch.equal(after[key], before[key]), key
    assert not torch.equal(after[f"{LAYER}.weight"], before[f"{LAYER}.weight"])
    model.save_pretrained(tmp_path)
    stock = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True, use_safetensors=True)
    reloaded = stock.state_dict()
    assert set(reloaded) == set(after)
    for key, value in after.items():
        assert torch.equal(reloaded[key], value), key
    assert int((reloaded[f"{LAYER}.weight"] == 0).sum()) == 64 * 32 // 2


def test_report_counts_what_is_there(model, ids):
    report = sp.sparsify(model, "wanda", sparsity=0.5, calibration_ids=ids)
    targets = sp.linears(model)
    assert set(report["layers"]) == set(targets)
    for name, layer in targets.items():
        row = report["layers"][name]
        nonzeros = int((layer.weight != 0).sum())
        assert row["parameters"] == layer.weight.numel()
        assert row["nonzeros"] == nonzeros
        assert row["sparsity"] == pytest.approx(1 - nonzeros / layer.weight.numel())
        assert row["dense_bytes"] == 4 * layer.weight.numel()
    q = report["layers"]["model.layers.0.self_attn.q_proj"]  # 32x32, 512 kept: values, column indices, row pointers
    assert q["compressed_bytes"] == 512 * 4 + 512 * 4 + 33 * 4
    total = report["total"]
    assert total["parameters"] == 2 * (2 * 32 * 32 + 2 * 16 * 32 + 3 * 64 * 32)  # q o, k v, gate up down; 2 layers
    assert total["nonzeros"] == sum(int((m.weight != 0).sum()) for m in targets.values())
    assert total["sparsity"] == pytest.approx(0.5)
    assert "no speedup" in report["note"]


def test_two_four_size_holds_two_bits_per_kept_value(model):
    report = sp.sparsify(model, "magnitude", n_m=(2, 4))
    q = report["layers"]["model.layers.0.self_attn.q_proj"]  # 512 fp32 values + 512 x 2 bits
    assert q["compressed_bytes"] == 512 * 4 + 128
    assert report["format"] == "2:4"


@pytest.mark.parametrize("keys, named", [
    ({"sparsity": 1.5}, "1.5"), ({"sparsity": 0.0}, "0.0"), ({"sparsity": 1.0}, "1.0"),
    ({"n_m": (4, 4)}, r"\(4, 4\)"), ({"n_m": (3, 2)}, r"\(3, 2\)"), ({"n_m": (2, 5)}, "m=5"),
    ({}, "exactly one"), ({"sparsity": 0.5, "n_m": (2, 4)}, "exactly one")])
def test_bad_values_refused_by_name_before_pruning(model, ids, keys, named):
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=named):
        sp.sparsify(model, "wanda", calibration_ids=ids, **keys)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_bad_method_and_missing_calibration_refused(model):
    with pytest.raises(ValueError, match="'sparsegpt'"):
        sp.sparsify(model, "sparsegpt", sparsity=0.5)
    with pytest.raises(ValueError, match="calibration_ids"):
        sp.sparsify(model, "wanda", sparsity=0.5)
    with pytest.raises(ValueError, match="in_features=32"):
        sp.masks(torch.ones(2, 32), n_m=(1, 3))
