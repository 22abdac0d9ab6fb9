import copy
from pathlib import Path

import pytest
import torch

from steps.compression import measure, onnx_export
from steps.compression.choices import BLOCK_METRICS
from steps.compression.choices import TRANSFORMER_IMPORTANCES as IMPORTANCES
from steps.compression.families import build, checkpoint, spec_of
from steps.compression.families.spec import ModelSpec
from steps.compression.families.vit.model import ViT
from steps.compression.transformer_depth import block_importance, prune_depth
from steps.compression.transformer_pruning import TransformerPruning, prune_transformer
from steps.compression.transformer_widths import head_scores, prune_embedding, prune_heads, prune_mlp

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = ModelSpec(name="vit", embed_dim=16, depth=3, heads=4, mlp_ratio=2.0)  # head_dim 4, MLP 32
X = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.arange(16) % 10
CALIBRATION = (X, Y)


def vit() -> ViT:
    torch.manual_seed(0)
    return build(SPEC).eval()


def expected_parameters(dim: int, heads: list[int], mlp: list[int], head_dim: int = 4) -> int:
    """SPEC's ViT (1 channel, patch 7, 16 patches + class token, 10 classes) with the given widths."""
    embed = 49 * dim + dim + dim + 17 * dim  # patch conv, class token, position embedding
    blocks = sum(4 * dim + (dim + 1) * 3 * h * head_dim + (h * head_dim + 1) * dim + (dim + 1) * m + (m + 1) * dim
                 for h, m in zip(heads, mlp, strict=True))
    return embed + blocks + 2 * dim + (dim + 1) * 10


def test_the_parameter_formula_matches_the_unpruned_model():
    assert measure.parameters(vit()) == expected_parameters(16, [4, 4, 4], [32, 32, 32])


def heads_zeroed(model: ViT, removed: list[list[int]]) -> ViT:
    """A copy whose removed heads contribute nothing: their slice of proj's input is zeroed."""
    reference = copy.deepcopy(model)
    for block, heads in zip(reference.blocks, removed, strict=True):
        d = block.attn.head_dim
        cols = [h * d + j for h in heads for j in range(d)]

        def zero(module, args, cols=cols):
            x = args[0].clone()
            x[..., cols] = 0
            return (x,)

        block.attn.proj.register_forward_pre_hook(zero)
    return reference


def lowest(scores: torch.Tensor, k: int) -> list[int]:
    return sorted(torch.argsort(scores, stable=True)[:k].tolist())


@pytest.mark.parametrize("importance", sorted(IMPORTANCES))
def test_head_pruning_removes_exactly_the_chosen_heads(importance):
    model = vit()
    removed = [lowest(s, 2) for s in head_scores(model, X[:1], importance, CALIBRATION)]
    reference = heads_zeroed(model, removed)
    params, macs = measure.parameters(model), measure.macs(model, X[:1])
    prune_heads(model, X[:1], 0.5, importance, CALIBRATION)
    assert [b.attn.num_heads for b in model.blocks] == [2, 2, 2]
    assert measure.parameters(model) == expected_parameters(16, [2, 2, 2], [32] * 3) < params
    assert measure.macs(model, X[:1]) < macs
    with torch.no_grad():
        assert torch.allclose(model(X), reference(X), atol=1e-5)
    assert all(p.grad is None for p in model.parameters())  # calibration gradients are not left behind


def test_l1_head_score_is_the_group_l1_of_the_heads_weights():
    model = vit()
    attn = model.blocks[1].attn
    w_qkv, w_proj = attn.qkv.weight.detach().abs(), attn.proj.weight.detach().abs()
    # per channel c: |proj column c| + |q row c| + |k row c| + |v row c|, averaged over the 2 layers
    channel = (w_proj.sum(0) + w_qkv[:16].sum(1) + w_qkv[16:32].sum(1) + w_qkv[32:].sum(1)) / 2
    expected = channel.view(4, 4).mean(1)
    assert torch.allclose(head_scores(model, X[:1], "l1")[1], expected, rtol=1e-5)


@pytest.mark.parametrize("importance", sorted(IMPORTANCES))
def test_importance_is_deterministic(importance):
    first = head_scores(vit(), X[:1], importance, CALIBRATION)
    second = head_scores(vit(), X[:1], importance, CALIBRATION)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert all(torch.isfinite(s).all() and (s >= 0).all() for s in first)


def test_taylor_removes_a_large_head_that_cannot_change_the_loss():
    model = vit()
    attn = model.blocks[0].attn
    with torch.no_grad():  # head 3 of block 0: the largest q/k/v weights, but proj ignores its output
        for third in range(3):
            attn.qkv.weight[third * 16 + 12 : third * 16 + 16] *= 10
        attn.proj.weight[:, 12:16] = 0
    assert 3 not in lowest(head_scores(model, X[:1], "l1")[0], 1)
    assert lowest(head_scores(model, X[:1], "taylor", CALIBRATION)[0], 1) == [3]


def test_output_norm_removes_a_head_whose_values_are_zero():
    model = vit()
    attn = model.blocks[2].attn
    with torch.no_grad():  # the value rows of head 1 (v is the last third of qkv)
        attn.qkv.weight[32 + 4 : 32 + 8] = 0
        attn.qkv.bias[32 + 4 : 32 + 8] = 0
    scores = head_scores(model, X[:1], "output_norm", CALIBRATION)[2]
    assert scores[1] == 0 and (scores[[0, 2, 3]] > 0).all()


def test_global_head_pruning_takes_heads_where_they_matter_least_but_never_the_last():
    model = vit()
    with torch.no_grad():  # block 0's heads are all tiny
        model.blocks[0].attn.qkv.weight *= 0.01
        model.blocks[0].attn.proj.weight *= 0.01
    prune_heads(model, X[:1], 0.5, "l1", global_pruning=True)
    heads = [b.attn.num_heads for b in model.blocks]
    assert heads[0] == 1 and sum(heads) == 6
    assert measure.parameters(model) == expected_parameters(16, heads, [32] * 3)
    assert model(X).shape == (16, 10)


@pytest.mark.parametrize(("round_to", "width"), [(1, 19), (8, 16)])
def test_mlp_pruning_keeps_rounded_widths(round_to, width):
    model = vit()
    macs = measure.macs(model, X[:1])
    prune_mlp(model, X[:1], 0.4, "taylor", CALIBRATION, round_to=round_to)  # 32 * 0.6 = 19.2
    assert [b.mlp.fc1.out_features for b in model.blocks] == [width] * 3
    assert [b.mlp.fc2.in_features for b in model.blocks] == [width] * 3
    assert measure.parameters(model) == expected_parameters(16, [4] * 3, [width] * 3)
    assert measure.macs(model, X[:1]) < macs
    assert model(X).shape == (16, 10)


def test_embedding_pruning_narrows_every_layer_on_the_residual_stream():
    model = vit()
    prune_embedding(model, X[:1], 0.25, "output_norm", CALIBRATION, round_to=4)
    assert model.cls_token.shape == (1, 1, 12) and model.pos_embed.shape == (1, 17, 12)
    assert model.patch_embed.out_channels == 12 and model.head.in_features == 12
    assert all(b.attn.qkv.in_features == b.attn.proj.out_features == b.mlp.fc1.in_features == b.mlp.fc2.out_features
               == b.norm1.normalized_shape[0] == 12 for b in model.blocks)
    assert [b.attn.num_heads for b in model.blocks] == [4] * 3  # heads keep their size
    assert measure.parameters(model) == expected_parameters(12, [4] * 3, [32] * 3)
    assert model(X).shape == (16, 10)


def with_idle_block(i: int) -> ViT:
    """A ViT whose block i adds nothing to the residual stream."""
    model = vit()
    with torch.no_grad():
        for layer in (model.blocks[i].attn.proj, model.blocks[i].mlp.fc2):
            layer.weight.zero_()
            layer.bias.zero_()
    return model


OUTPUT_CHANGE_METRICS = sorted(set(BLOCK_METRICS) - {"perplexity", "last"})
"""The metrics that score how much a block changes what the model computes: an idle block scores lowest. (perplexity
scores the loss without it, which may rank an untrained block that hurts below the idle one; last scores position.)"""


@pytest.mark.parametrize("metric", OUTPUT_CHANGE_METRICS)
def test_depth_pruning_removes_the_block_that_changes_nothing(metric):
    model = with_idle_block(1)
    before = model(X)
    scores = block_importance(model, CALIBRATION, metric)
    assert scores.shape == (3,) and int(scores.argmin()) == 1
    idle, kept = model.blocks[1], [model.blocks[0], model.blocks[2]]
    prune_depth(model, 0.34, CALIBRATION, metric)
    assert list(model.blocks) == kept and idle not in list(model.blocks)
    assert measure.parameters(model) == expected_parameters(16, [4, 4], [32, 32])
    assert torch.equal(model(X), before)


def test_logit_kl_of_an_idle_block_is_zero_and_of_the_others_positive():
    scores = block_importance(with_idle_block(0), CALIBRATION, "logit_kl")
    assert scores[0] == 0 and (scores[1:] > 0).all()


PLANS = {
    "heads": TransformerPruning(heads=0.5, importance="taylor"),
    "global_heads": TransformerPruning(heads=0.4, global_heads=True),
    "mlp": TransformerPruning(mlp=0.5, round_to=8),
    "embedding": TransformerPruning(embedding=0.25, round_to=4, importance="output_norm"),
    "depth": TransformerPruning(depth=0.34),
    "all": TransformerPruning(depth=0.34, heads=0.5, mlp=0.5, embedding=0.25, round_to=4, importance="taylor"),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_pruned_model_reloads_from_its_checkpoint_with_identical_outputs(tmp_path: Path, name):
    model = prune_transformer(vit(), X[:1], PLANS[name], CALIBRATION)
    assert measure.parameters(model) < measure.parameters(vit())
    checkpoint.save(model, SPEC, tmp_path / "m.safetensors", tmp_path / "m.json")
    loaded, spec = checkpoint.load(tmp_path / "m.safetensors", tmp_path / "m.json")
    assert spec == spec_of(model, SPEC) != SPEC
    assert spec.block_heads == [b.attn.num_heads for b in model.blocks]
    assert spec.block_mlp == [b.mlp.fc1.out_features for b in model.blocks]
    assert measure.parameters(loaded) == measure.parameters(model)
    with torch.no_grad():
        assert torch.equal(loaded(X), model(X))


def test_a_mean_pooled_colour_vit_prunes_and_reloads(tmp_path: Path):
    spec = ModelSpec(name="vit", in_channels=3, image_size=32, patch_size=8, embed_dim=16, depth=3, heads=4,
                     pool="mean")
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    model = prune_transformer(build(spec).eval(), x[:1], PLANS["all"], (x, Y[:8]))
    assert model.cls_token is None and model.pos_embed.shape == (1, 16, 12)
    checkpoint.save(model, spec, tmp_path / "m.safetensors", tmp_path / "m.json")
    loaded, _ = checkpoint.load(tmp_path / "m.safetensors", tmp_path / "m.json")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_fully_pruned_model_exports_to_onnx(tmp_path: Path):
    model = prune_transformer(vit(), X[:1], PLANS["all"], CALIBRATION)
    assert spec_of(model, SPEC).depth == 2 and spec_of(model, SPEC).embed_dim == 12
    onnx_export.export(model, X[:2], tmp_path / "m.onnx")
    onnx_export.check(tmp_path / "m.onnx")
    result = onnx_export.parity(model, onnx_export.session(tmp_path / "m.onnx", threads=1), X, Y)
    assert result.max_abs_diff < 1e-4 and result.argmax_mismatches == 0


def test_amount_zero_changes_nothing():
    model = vit()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prune_transformer(model, X[:1], TransformerPruning(), CALIBRATION)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert spec_of(model, SPEC) is SPEC


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="'fpgm'.*l1.*output_norm.*taylor"):
        prune_heads(vit(), X[:1], 0.5, "fpgm")
    with pytest.raises(ValueError, match="'taylor' is data-driven"):
        prune_mlp(vit(), X[:1], 0.5, "taylor")
    with pytest.raises(ValueError, match="amount must be in \\[0, 1\\)"):
        prune_embedding(vit(), X[:1], 1.0, "l1")
    with pytest.raises(ValueError, match="'cka'.*block_influence.*logit_cosine.*logit_kl"):
        prune_depth(vit(), 0.3, CALIBRATION, "cka")
    with pytest.raises(ValueError, match="'logit_kl' is data-driven"):
        prune_transformer(vit(), X[:1], TransformerPruning(depth=0.3))
    with pytest.raises(TypeError, match="needs a vit.ViT, got CNN"):
        prune_heads(build(ModelSpec(name="cnn", channels=[4], hidden=[8])), X[:1], 0.5, "l1")


def test_depth_pruning_keeps_at_least_one_block():
    model = prune_depth(vit(), 0.99, CALIBRATION)
    assert len(model.blocks) == 1
    assert spec_of(model, SPEC).depth == 1
    assert model(X).shape == (16, 10)
