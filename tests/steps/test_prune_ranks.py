"""resources.processes: 2 for prune on CPU: under a real torchrun (gloo, 2 ranks) every rank prunes the teacher alike
and fine-tunes its shard of each batch with DDP while magnitude pruning's masks stay on (`weight_orig` the parameter
DDP averages, `weight_mask` a buffer), giving one process's pruned model, with one MLflow run and one
metrics/prune.json. The teacher is an MLP (no BatchNorm, whose statistics would be per shard) trained once in one
process; prune then runs on one process and on two ranks in the same project. A budget search stays one process."""

from __future__ import annotations

import logging

import pytest
import torch

from steps import config, prune, teacher
from steps.compression import torchrun_env
from steps.core import launch
from steps.core.layout import metrics_path
from steps.core.names import ModelRole
from steps.core.results import PruneResult
from steps.core.torchkit import load_model
from tests.helpers import metric_history, the_one_ranks_run, variant

WEIGHT_ATOL = 1e-5
"""The pruned weights, 2 ranks vs 1 process: the same samples per step and the same mean gradient, summed in another
float order (each rank its half of the batch, then the all-reduce); measured 7e-9 after two rounds of one epoch."""


def _params(base: config.Params, experiment: str, processes: int) -> config.Params:
    raw = base.model_dump(mode="json")
    raw["threads"] = 1  # two ranks share the two cores
    raw["resources"] = {**raw["resources"], "processes": processes}
    raw["tracking"]["experiment"] = experiment
    raw["teacher"]["arch"] = {"name": "mlp", "hidden": [32]}  # no BatchNorm: its statistics would be per shard
    # slow learning rates: validation accuracy short of 1 (0.7 the teacher's, about 0.8 and 0.9 the rounds'), so it
    # can differ
    raw["teacher"]["train"] = {**raw["teacher"]["train"], "epochs": 1, "batch_size": 50, "lr": 0.0003}
    # two rounds (tiny data: the launch costs the time, not the rounds): the second prunes a model DDP fine-tuned
    raw["prune"] = {**raw["prune"], "method": "magnitude", "scope": "global", "schedule": "linear", "rounds": 2,
                    "target_sparsity": 0.5,
                    "finetune": {**raw["prune"]["finetune"], "epochs": 1, "batch_size": 50, "lr": 0.0001}}
    return config.validate(raw)


@pytest.fixture(scope="module")
def pruned(_snapshots, stage_params):
    """(project, {processes: (result, the pruned model's state)}, the stages torchrun ran): the teacher once in one
    process, then prune on one process and on two ranks (500 training samples: 10 global batches a round)."""
    root = _snapshots.restore("data")
    teacher.run(_params(stage_params, "teacher", 1), root)
    launched, runs = [], {}

    def spied(stage, *args, **kwargs):
        launched.append(stage)
        return torchrun(stage, *args, **kwargs)

    torchrun = launch.torchrun
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(launch, "torchrun", spied)
        for processes in (1, 2):
            result = prune.run(_params(stage_params, f"prune-{processes}", processes), root)
            runs[processes] = result, load_model(root, ModelRole.PRUNED)[0].state_dict()
    return root, runs, launched


@pytest.mark.integration  # a real torchrun launch (~20 s on 2 busy cores): make test, not make check
def test_two_ranks_prune_the_model_one_process_prunes(pruned):
    _, runs, launched = pruned
    assert launched == ["prune"]  # the two ranks' run, not this process's
    (one, weights_one), (two, weights_two) = runs[1], runs[2]
    assert [p["round"] for p in two.curve] == [1, 2] and two.sparsity == pytest.approx(0.5, abs=1e-3)
    assert all(0 < p["val_accuracy"] < 1 for p in one.curve)  # room to differ
    for key in ("sparsity", "parameters", "val_accuracy"):
        assert [p[key] for p in two.curve] == [p[key] for p in one.curve], key
    assert (two.parameters, two.val_accuracy, two.layer_sparsity) == (one.parameters, one.val_accuracy,
                                                                     one.layer_sparsity)
    assert weights_two.keys() == weights_one.keys() and not any(k.endswith("_mask") for k in weights_two)
    for name, tensor in weights_two.items():
        assert torch.equal(tensor == 0, weights_one[name] == 0), name  # the same weights pruned
        torch.testing.assert_close(tensor, weights_one[name], rtol=0, atol=WEIGHT_ATOL, msg=name)


@pytest.mark.integration
def test_two_ranks_record_one_run_and_one_result(pruned):
    root, runs, _ = pruned
    one, two = runs[1][0], runs[2][0]
    the_one_ranks_run(root, "prune-2", "prune", two.mlflow_run_id)
    # step 0 (the teacher) and one point per round, logged once
    assert metric_history(two.mlflow_run_id, "val_accuracy") == metric_history(one.mlflow_run_id, "val_accuracy")
    assert len(metric_history(two.mlflow_run_id, "sparsity")) == 3
    assert PruneResult.read(root / metrics_path("prune")) == two
    assert sorted(p.name for p in (root / "models").iterdir()) == ["pruned.json", "pruned.safetensors",
                                                                   "teacher.json", "teacher.safetensors"]


def _budget(params: config.Params, processes: int) -> config.Params:
    return variant(params, resources={"processes": processes}, target={"parameters": 1000})


def test_a_budget_search_runs_in_this_process_and_says_so(project_after, stage_params, monkeypatch, caplog):
    root = project_after("data")
    searched = object()
    monkeypatch.setattr(prune, "run_search", lambda params, root, origin: searched)

    def no_launch(*args, **kwargs):
        raise AssertionError("the budget search started torchrun")

    monkeypatch.setattr(launch, "torchrun", no_launch)
    with caplog.at_level(logging.WARNING, logger="steps.prune"):
        assert prune.run(_budget(stage_params, 2), root) is searched
    assert [r.getMessage() for r in caplog.records] == [
        "prune: target: the budget search runs in one process (resources.processes 2 x nodes 1 are for the prune "
        "rounds' fine-tuning, which a budget replaces)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="steps.prune"):
        prune.run(_budget(stage_params, 1), root)
    assert caplog.records == []


def test_a_budget_search_as_a_rank_of_torchrun_is_refused_naming_target(project_after, stage_params, monkeypatch):
    root = project_after("data")
    monkeypatch.setattr(prune, "run_search", lambda params, root, origin: pytest.fail("searched on a rank"))
    monkeypatch.setenv(torchrun_env.TORCHRUN_ENV, "a-scheduler's-job")
    with pytest.raises(ValueError, match=r"^target: the budget search runs in one process, not as a rank of "
                                         r"torchrun"):
        prune.run(_budget(stage_params, 2), root)
