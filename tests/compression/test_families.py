"""Model families: every model built from params.yaml knows its family, and the family answers the hooks."""

from __future__ import annotations

import json

import pytest
import torch

from steps import config
from steps.compression import measure, structured
from steps.compression.families import build, family_of, spec_of
from steps.compression.families.custom.model import CustomModelError
from steps.compression.families.spec import ModelSpec
from steps.compression.transformer_pruning import TransformerPruning, prune_transformer
from tests.config.test_family_configs import VALID
from tests.helpers import default_params

X = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def from_params(arch: dict) -> torch.nn.Module:
    """Validated as params.yaml's teacher.arch, then built as the teacher stage does (before sizing)."""
    raw = default_params()
    raw["teacher"]["arch"] = arch
    torch.manual_seed(0)
    return build(ModelSpec(**config.validate(raw).teacher.arch.model_dump()))


@pytest.mark.parametrize("name", sorted(set(VALID) - {"hf"}))  # hf reads text: tests/compression/test_hf_family.py
def test_every_family_built_from_params_answers_its_hooks(name):
    model = from_params(VALID[name])
    family = family_of(model)
    assert family.name == name and family.config.__name__.lower().startswith(name)
    modules = dict(model.named_modules())
    assert family.pooled_layer(model) in modules
    assert set(family.attention_maps(model) + family.hidden_states(model)) <= set(modules)
    assert bool(family.attention_maps(model)) == (name == "vit") == ("transformer" in family.prune_methods)
    assert family.needs_images == (name in ("cnn", "resnet", "vit"))
    assert model(family.example_input(ModelSpec(**VALID[name]))).shape == (1, 10)


def test_any_other_module_is_the_users_own():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    assert family_of(model).name == "custom"


def test_a_channel_pruned_model_keeps_its_family_and_its_spec():
    spec = ModelSpec(name="resnet", channels=[4, 8], hidden=[16])
    model = build(spec)
    structured.prune_channels(model, X[:1], 0.5, "l1")
    assert family_of(model).name == "resnet" and spec_of(model, spec) is spec


def test_a_pruned_vits_spec_round_trips_through_json():
    spec = ModelSpec(name="vit", embed_dim=16, depth=3, heads=4)
    torch.manual_seed(0)
    model = prune_transformer(build(spec).eval(), X[:1], TransformerPruning(heads=0.5, mlp=0.5, depth=0.34),
                              (X, torch.arange(4)))
    assert family_of(model).name == "vit"
    pruned = spec_of(model, spec)
    again = ModelSpec.from_dict(json.loads(json.dumps(pruned.to_dict())))
    rebuilt = build(again)
    assert again == pruned != spec
    assert [b.attn.num_heads for b in rebuilt.blocks] == [b.attn.num_heads for b in model.blocks] == again.block_heads
    assert measure.parameters(rebuilt) == measure.parameters(model) < measure.parameters(build(spec))


def test_structured_pruning_refusals_are_the_familys():
    unprunable = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.LayerNorm([4, 26, 26]))
    with pytest.raises(CustomModelError, match=r"layer '1' \(LayerNorm"):
        family_of(unprunable).refuse_unprunable(unprunable)
    vit = from_params(VALID["vit"])
    with pytest.raises(ValueError, match="a vit is not pruned by channel: use prune.method transformer"):
        family_of(vit).refuse_unprunable(vit)
    cnn = from_params(VALID["cnn"])
    family_of(cnn).refuse_unprunable(cnn)  # only Conv2d, BatchNorm and Linear weights
