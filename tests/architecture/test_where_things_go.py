"""ARCHITECTURE.md's "Where a new thing goes", held: each kind of plug-in is found where it says, through the one
registry it names, and fits the one contract it names. A new entry that skips a step fails here by name."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from flows import cli
from steps import config, sources
from steps.compression import choices
from steps.compression.criteria import Importance
from steps.compression.distillation.term import Term
from steps.compression.families import Family
from steps.compression.prune_method import PruneMethod
from steps.core.dag import STAGES
from steps.promote import gates
from steps.sources.base import SourceOptions
from tests.helpers import REPO


@pytest.mark.parametrize("st", STAGES, ids=lambda st: st.name)
def test_a_stage_is_a_module_or_folder_with_run_and_main(st):
    module = importlib.import_module(st.module)
    assert callable(module.run) and callable(module.main)
    assert list(inspect.signature(module.run).parameters)[:2] == ["params", "root"]
    folder = REPO / "steps" / st.name
    if folder.is_dir():
        assert (folder / "__main__.py").is_file(), f"{folder}: `python -m {st.module}` needs a __main__.py"


@pytest.mark.parametrize("name", list(sources.SOURCES))
def test_a_data_source_is_one_module_and_one_registry_line(name):
    reader = sources.SOURCES[name]
    assert reader.__module__ == f"steps.sources.{name}" and reader.__name__ == "read"
    assert len(inspect.signature(reader).parameters) == 2  # (where the raw data is, SourceOptions)


def test_each_data_source_declares_the_source_specific_keys_it_reads():
    """sources.READS: one line per source, naming only keys of sources.OPTIONS, which are data.* keys and
    SourceOptions fields (the config and the readers both refuse the others from it)."""
    assert list(sources.READS) == list(sources.SOURCES)
    assert all(set(keys) <= set(sources.OPTIONS) for keys in sources.READS.values())
    assert set(sources.OPTIONS) <= set(config.DataConfig.model_fields) & set(SourceOptions.__dataclass_fields__)


def test_the_data_source_names_are_the_schemas():
    field = config.DataConfig.model_fields["source"]
    needs = {"table": {"label_column": "y"}, "text": {"max_length": 8, "tokenizer": {"path": "tok"}}}
    for name in sources.SOURCES:
        raw = {"source": name, "path": "x", "val_size": 1, **needs.get(name, {})}
        # the data stage alone: elsewhere text goes with an hf teacher (tests/steps/test_hf_teacher.py)
        assert config.DataConfig.model_validate(raw, context={"stage": "data"}).source == name
    assert field.default in sources.SOURCES


@pytest.mark.parametrize("name", list(choices.FAMILIES))
def test_a_model_family_is_one_folder_and_one_registry_line(name):
    family = choices.FAMILIES[name]
    assert isinstance(family, Family) and family.name == name
    folder = Path(inspect.getfile(family.build)).parent
    assert folder == REPO / "steps" / "compression" / "families" / name
    assert (folder / "config.py").is_file() and family.config.__module__.endswith(f"families.{name}.config")
    assert family.prune_methods <= set(choices.PRUNE_METHODS), f"{name} names a prune method with no registry line"


@pytest.mark.parametrize("name", list(choices.DISTILL_TERMS))
def test_a_distillation_term_is_one_module_and_one_registry_line(name):
    term = choices.DISTILL_TERMS[name]
    assert issubclass(term, Term) and term.__module__ == f"steps.compression.distillation.{name}"
    assert term.__doc__ and term.reads


@pytest.mark.parametrize("name", list(choices.CRITERIA))
def test_an_importance_criterion_is_one_class_on_the_one_contract(name):
    criterion = choices.CRITERIA[name]
    assert issubclass(criterion, Importance) and isinstance(criterion.needs_calibration, bool)
    assert criterion.__module__.startswith("steps.compression.criteria.")


@pytest.mark.parametrize("name", list(choices.PRUNE_METHODS))
def test_a_pruning_method_is_one_class_on_the_one_contract(name):
    method = choices.PRUNE_METHODS[name]
    assert issubclass(method, PruneMethod) and not inspect.isabstract(method)
    assert name in config.PruneConfig.model_fields["method"].annotation.__args__  # prune.method accepts it


def test_every_quality_gate_has_its_threshold_in_promote_config():
    """A gate is a pure function in steps/promote/gates.py; its name is its PromoteConfig key."""
    report = {"models": {"student": {"accuracy": 0.9, "parameters": 10, "file_bytes": 100, "latency_p95_ms": 0.9,
                                     "latency_p95_low_ms": 0.8, "latency_p95_high_ms": 1.0,
                                     "class_recall": [0.9, 0.9]},
                         "teacher": {"accuracy": 0.91, "parameters": 100, "file_bytes": 1000,
                                     "class_recall": [0.9, 0.9]}}}
    cfg = config.PromoteConfig(model_name="m", min_accuracy=0.5, max_accuracy_drop=0.1, max_param_ratio=0.5,
                               max_size_ratio=0.5, max_latency_p95_ms=5.0)
    found = gates.quality_gates(report, cfg)
    assert {g.name for g in found} == {"min_accuracy", "max_accuracy_drop", "max_param_ratio", "max_size_ratio",
                                       "max_latency_p95_ms"}
    assert all(g.name.split(".")[0] in config.PromoteConfig.model_fields for g in found)


def test_every_command_module_is_registered():
    """A command is a module in flows/cli/ registered in flows/cli/__init__.py (console and signals are helpers)."""
    registered = {callback.__module__ for callback in
                  [c.callback for c in cli.app.registered_commands]
                  + [c for g in cli.app.registered_groups for c in
                     [cmd.callback for cmd in g.typer_instance.registered_commands]]}
    modules = {f"flows.cli.{p.stem}" for p in (REPO / "flows" / "cli").glob("*.py")} - {
        "flows.cli.__init__", "flows.cli.console", "flows.cli.signals"}
    assert modules <= registered
