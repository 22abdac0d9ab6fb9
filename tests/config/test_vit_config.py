"""The ViT keys of params.yaml: arch, prune.transformer, distill.attention_maps / hidden_states, and their errors."""

from __future__ import annotations

import pytest

from steps import config
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec
from tests.helpers import default_params

VIT = {"name": "vit", "patch_size": 7, "embed_dim": 32, "depth": 2, "heads": 4, "mlp_ratio": 2.0, "pool": "mean"}


def spec_from(arch: config.ArchConfig) -> ModelSpec:
    """What torchkit.spec_from builds before sizing from the manifest: the field names pass through as they are."""
    return ModelSpec(**arch.model_dump())


def _with(**sections) -> dict:
    raw = default_params()
    for path, value in sections.items():
        section, _, key = path.partition("__")
        raw[section][key] = value
    return raw


def test_a_vit_arch_passes_through_to_the_model_spec_by_name():
    params = config.validate(_with(teacher__arch=VIT))
    spec = spec_from(params.teacher.arch)
    assert (spec.name, spec.patch_size, spec.embed_dim, spec.depth, spec.heads, spec.pool) == ("vit", 7, 32, 2, 4,
                                                                                                "mean")
    assert build(spec)(__import__("torch").zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(("change", "message"), [
    ({"embed_dim": 30}, "teacher.arch: Value error, vit embed_dim 30 is not divisible by heads 4"),
    ({"pool": "max"}, "teacher.arch.pool: Input should be 'cls' or 'mean'"),
    ({"patch_size": 0}, "teacher.arch.patch_size: Input should be greater than or equal to 1"),
    ({"channels": [8]}, r"teacher.arch.channels: unknown key \(value \[8\]\)"),
    ({"mlp_ratio": 0}, "teacher.arch.mlp_ratio: Input should be greater than 0"),
])
def test_bad_vit_arch_keys_are_named(change, message):
    with pytest.raises(config.ConfigError, match=message):
        config.validate(_with(teacher__arch={**VIT, **change}))


def test_a_patch_that_does_not_divide_the_image_is_named_when_the_model_is_built():
    spec = spec_from(config.validate(_with(teacher__arch={**VIT, "patch_size": 5})).teacher.arch)
    with pytest.raises(ValueError, match="vit patch_size 5 must divide image_size 28"):
        build(spec)


def test_transformer_pruning_needs_a_fraction_and_known_names():
    raw = default_params()
    raw["prune"].update(method="transformer")
    with pytest.raises(config.ConfigError, match="prune: Value error, prune.method transformer needs a fraction > 0"):
        config.validate(raw)
    raw["prune"]["transformer"] = {"heads": 0.5, "importance": "l2"}
    with pytest.raises(config.ConfigError, match=r"prune.transformer.importance: Input should be 'l1', 'taylor'"):
        config.validate(raw)
    raw["prune"]["transformer"] = {"depth": 1.0}
    with pytest.raises(config.ConfigError, match="prune.transformer.depth: Input should be less than 1"):
        config.validate(raw)
    raw["prune"]["transformer"] = {"heads": 0.5, "global_heads": True, "depth_metric": "block_influence"}
    assert config.validate(raw).prune.transformer.depth_metric == "block_influence"


def test_vit_distillation_terms_need_a_vit_student_and_a_known_layer_map():
    raw = default_params()
    raw["distill"]["attention_maps"] = {"weight": 1.0, "layer_map": "last"}
    with pytest.raises(config.ConfigError, match="need a vit or hf student \\(distill.student.name is 'cnn'\\)"):
        config.validate(raw)
    raw["distill"]["student"] = VIT
    assert config.validate(raw).distill.attention_maps.layer_map == "last"
    raw["distill"]["hidden_states"] = {"weight": 1.0, "layer_map": "middle"}
    with pytest.raises(config.ConfigError, match="distill.hidden_states.layer_map: Input should be 'uniform' or "):
        config.validate(raw)


def test_the_default_params_stay_a_cnn_without_transformer_terms():
    params = config.validate(default_params())
    assert params.teacher.arch.name == "cnn" and params.prune.method == "magnitude"
    assert params.distill.attention_maps.weight == 0 and params.distill.hidden_states.weight == 0
