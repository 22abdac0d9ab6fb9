"""Every choice-by-name registry: each entry resolves, and the config schema accepts exactly its names."""

import typing

import pytest

from steps import config
from steps.compression import choices
from steps.compression.families import Family

REGISTRIES = {name: value for name, value in vars(choices).items() if isinstance(value, choices.Registry)}
SCHEMA_FIELDS = {  # registry -> (schema model, field)
    "SCHEDULES": (config.PruneConfig, "schedule"),
    "IMPORTANCES": (config.PruneConfig, "importance"),
    "L1_TARGETS": (config.L1Config, "target"),
    "LR_SCHEDULES": (config.TrainConfig, "lr_schedule"),
    "TRANSFORMER_IMPORTANCES": (config.TransformerPruneConfig, "importance"),
    "BLOCK_METRICS": (config.TransformerPruneConfig, "depth_metric"),
    "LAYER_MAPS": (config.TransformerLossConfig, "layer_map"),
}


@pytest.mark.parametrize("registry", sorted(set(REGISTRIES) - {"FAMILIES"}))
def test_every_entry_resolves_to_a_callable(registry):
    for name in REGISTRIES[registry]:
        assert callable(REGISTRIES[registry][name]), f"{registry}[{name!r}]"


def test_every_family_entry_resolves_to_its_family_and_the_schema_takes_its_config():
    """FAMILIES' entries are the families' hooks; config.ArchConfig is the union of their configs, one per name."""
    union = typing.get_args(typing.get_args(config.ArchConfig)[0])
    tags = {typing.get_args(member.model_fields["name"].annotation)[0]: member for member in union}
    assert set(tags) == set(choices.FAMILIES)
    for name in choices.FAMILIES:
        family = choices.FAMILIES[name]
        assert isinstance(family, Family) and family.name == name and family.config is tags[name]


@pytest.mark.parametrize("registry", sorted(SCHEMA_FIELDS))
def test_the_schema_accepts_exactly_the_registry_names(registry):
    model, field = SCHEMA_FIELDS[registry]
    assert set(typing.get_args(model.model_fields[field].annotation)) == set(REGISTRIES[registry])


def test_every_registry_is_tied_to_the_schema():
    assert set(REGISTRIES) == set(SCHEMA_FIELDS) | {"FAMILIES"}


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown pruning schedule 'cubicc'; choose one of \['cubic'"):
        choices.SCHEDULES.resolve("cubicc")
