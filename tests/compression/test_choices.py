"""Every choice-by-name registry: each entry resolves, and the config schema accepts exactly its names."""

import typing

import pytest

from steps import config
from steps.compression import choices
from steps.compression.families import Family
from steps.config.distill import DistillTerm
from tests.helpers import default_params

REGISTRIES = {name: value for name, value in vars(choices).items() if isinstance(value, choices.Registry)}
SCHEMA_FIELDS = {  # registry -> (schema model, field)
    "SCHEDULES": (config.PruneConfig, "schedule"),
    "PRUNE_METHODS": (config.PruneConfig, "method"),
    "IMPORTANCES": (config.PruneConfig, "importance"),
    "L1_TARGETS": (config.L1Config, "target"),
    "LR_SCHEDULES": (config.TrainConfig, "lr_schedule"),
    "TRANSFORMER_IMPORTANCES": (config.TransformerPruneConfig, "importance"),
    "BLOCK_METRICS": (config.TransformerPruneConfig, "depth_metric"),
    "LAYER_MAPS": (config.TransformerLossConfig, "layer_map"),
    "DISTILL_TERMS": (DistillTerm, "name"),
    "STRATEGIES": (config.ResourcesConfig, "strategy"),
}
CRITERIA_VIEWS = ("IMPORTANCES", "TRANSFORMER_IMPORTANCES", "BLOCK_METRICS")
"""The params keys' subsets of the one criteria registry (CRITERIA), which no key reads whole."""


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
    assert set(REGISTRIES) == set(SCHEMA_FIELDS) | {"CRITERIA", "FAMILIES"}


def test_the_criteria_views_are_the_one_criteria_registry():
    criteria = choices.CRITERIA
    seen = set()
    for view in CRITERIA_VIEWS:
        for name in REGISTRIES[view]:
            assert REGISTRIES[view][name] is criteria[name], f"{view}[{name!r}] is not CRITERIA's"
        seen |= set(REGISTRIES[view])
    assert seen == set(criteria)  # every criterion is reachable from some params key


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown pruning schedule 'cubicc'; choose one of \['cubic'"):
        choices.SCHEDULES.resolve("cubicc")


def test_an_unknown_prune_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown prune.method 'lottery'; choose one of "
                                         r"\['magnitude', 'structured', 'transformer', 'wanda'\]"):
        choices.PRUNE_METHODS.resolve("lottery")
    with pytest.raises(config.ConfigError, match=r"prune.method: Input should be 'magnitude', 'structured', "
                                                 r"'transformer' or 'wanda'"):
        config.validate(_with_prune(method="lottery"))


@pytest.mark.parametrize(("prune", "field", "valid"), [
    ({"importance": "output_norm"}, "importance", "'l1', 'l2', 'taylor' or 'bn_scale'"),  # a transformer one
    ({"method": "transformer", "transformer": {"heads": 0.5, "importance": "bn_scale"}},  # a channel one
     "transformer.importance", "'l1', 'taylor' or 'output_norm'"),
    ({"method": "transformer", "transformer": {"depth": 0.5, "depth_metric": "taylor"}},  # not a block one
     "transformer.depth_metric", "'logit_kl', 'logit_cosine', 'block_influence', 'perplexity' or 'last'"),
])
def test_a_criterion_valid_for_another_key_is_refused_naming_the_key_and_its_values(prune, field, valid):
    with pytest.raises(config.ConfigError, match=rf"prune.{field}: Input should be {valid}"):
        config.validate(_with_prune(**prune))


def _with_prune(**changes) -> dict:
    raw = default_params()
    raw["prune"].update(changes)
    return raw
