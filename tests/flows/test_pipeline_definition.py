"""One DAG, two runners: dvc.yaml and the Prefect flow must describe the same stages."""

import ast
import inspect

import yaml

from flows import compress
from steps import config
from steps.core.dag import STAGE_NAMES, STAGES, dvc_yaml
from tests.helpers import REPO


def test_committed_dvc_yaml_matches_the_pipeline():
    committed = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert committed == dvc_yaml(config.load(REPO)), "dvc.yaml is stale: run `shrinkflow dvc-yaml`"
    assert list(committed["stages"]) == list(STAGE_NAMES)


def test_stage_order_is_the_product_order():
    assert STAGE_NAMES == ("data", "teacher", "prune", "distill", "export", "quantize", "evaluate", "promote")


def test_flow_runs_the_pipeline_stages_in_order():
    """The flow iterates STAGES itself; no stage list of its own that could drift."""
    source = inspect.getsource(compress._run_stages)
    loops = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.For)]
    assert any(isinstance(loop.iter, ast.Name) and loop.iter.id == "STAGES" for loop in loops)


def test_every_stage_module_has_run_and_main():
    import importlib

    for stage in STAGES:
        module = importlib.import_module(stage.module)
        assert callable(module.run) and callable(module.main), stage.module


def test_stage_inputs_come_from_earlier_stages():
    produced: set[str] = set()
    for stage in STAGES:
        for dep in stage.inputs:
            if dep.startswith(("data/", "models/", "metrics/")):
                assert dep in produced, f"{stage.name} reads {dep} before any stage writes it"
        produced.update(stage.outs, stage.metrics)
