import dataclasses
from pathlib import Path

import pytest
import torch

from steps.compression import measure, onnx_export
from steps.compression.distillation.features import FeatureTap
from steps.compression.families import build, checkpoint, spec_of
from steps.compression.families.spec import ModelSpec
from steps.compression.families.vit.model import ViT, layout

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ModelSpec(name="vit", embed_dim=16, depth=2, heads=2, mlp_ratio=2.0)


def tiny(**changes) -> ViT:
    torch.manual_seed(0)
    return build(dataclasses.replace(TINY, **changes)).eval()


def images(n: int, channels: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_forward_shapes_and_tapped_features(pool, channels, size):
    model = tiny(pool=pool, in_channels=channels, image_size=size, patch_size=4, num_classes=7)
    tokens = (size // 4) ** 2 + (pool == "cls")
    names = ["blocks.0.attn.attn_probs", "blocks.1", "pool"]
    with FeatureTap(model, names) as tap:
        logits = model(images(3, channels, size))
    assert logits.shape == (3, 7)
    attn = tap.outputs["blocks.0.attn.attn_probs"]
    assert attn.shape == (3, 2, tokens, tokens)
    assert torch.allclose(attn.sum(-1), torch.ones(3, 2, tokens), atol=1e-5)  # rows are distributions
    assert tap.outputs["blocks.1"].shape == (3, tokens, 16)
    assert tap.outputs["pool"].shape == (3, 16)
    assert (model.cls_token is None) == (pool == "mean")


def test_default_spec_has_the_documented_size():
    # patch 1*49*64+64, cls 64, pos 17*64, 4 blocks of (2 LN 256, qkv 12480, proj 4160, fc1 8320, fc2 8256),
    # final LN 128, head 650
    model = build(ModelSpec(name="vit"))
    assert measure.parameters(model) == 3200 + 64 + 1088 + 4 * 33472 + 128 + 650 == 139018
    assert [b.attn.num_heads for b in model.blocks] == [4] * 4
    assert [b.attn.head_dim for b in model.blocks] == [16] * 4


def test_per_block_widths_build_as_given():
    model = tiny(block_heads=[2, 1], block_mlp=[8, 24], head_dim=4)
    assert [b.attn.qkv.out_features for b in model.blocks] == [24, 12]
    assert [b.attn.proj.in_features for b in model.blocks] == [8, 4]
    assert [b.mlp.fc1.out_features for b in model.blocks] == [8, 24]
    assert model(images(2)).shape == (2, 10)


@pytest.mark.parametrize(("changes", "message"), [
    ({"patch_size": 5}, "patch_size 5 must divide image_size 28"),
    ({"pool": "max"}, "pool must be one of"),
    ({"heads": 3}, "embed_dim 16 is not divisible by heads 3"),
    ({"block_heads": [2]}, "block_heads must hold one width >= 1 per block"),
    ({"block_mlp": [8, 0]}, "block_mlp must hold one width >= 1 per block"),
    ({"depth": 0}, "needs depth, embed_dim, heads >= 1"),
])
def test_impossible_specs_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        layout(dataclasses.replace(TINY, **changes))


def test_old_specs_load_and_unknown_keys_are_refused():
    old = {"name": "cnn", "channels": [4], "hidden": [8], "batch_norm": True, "in_channels": 1,
           "image_size": 28, "num_classes": 10}
    assert ModelSpec.from_dict(old).patch_size == 7
    vit = dataclasses.replace(TINY, block_heads=[2, 1], block_mlp=[8, 24])
    assert ModelSpec.from_dict(vit.to_dict()) == vit
    with pytest.raises(ValueError, match="unknown keys \\['heads_per_block'\\]"):
        ModelSpec.from_dict({**TINY.to_dict(), "heads_per_block": [1, 1]})


def test_unpruned_model_keeps_its_spec_and_round_trips(tmp_path: Path):
    model = tiny()
    assert spec_of(model, TINY) is TINY
    checkpoint.save(model, TINY, tmp_path / "m.safetensors", tmp_path / "m.json")
    loaded, spec = checkpoint.load(tmp_path / "m.safetensors", tmp_path / "m.json")
    x = images(3)
    assert spec == TINY
    assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_onnx_export_matches_pytorch_at_another_batch_size(tmp_path: Path, pool):
    model = tiny(pool=pool)
    path = tmp_path / "vit.onnx"
    onnx_export.export(model, images(2), path)
    onnx_export.check(path)
    x = images(5, seed=1)  # exported at batch 2: the batch axis must be dynamic
    result = onnx_export.parity(model, onnx_export.session(path, threads=1), x, model(x).argmax(1))
    assert result.images == 5
    assert result.max_abs_diff < 1e-4
    assert result.argmax_mismatches == 0
