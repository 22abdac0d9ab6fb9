"""resources.strategy: fsdp on CPU: a tiny Llama teacher, then a smaller Llama student distilled from it with a
hidden-states term (its projection a parameter outside the model, the student's layers tapped), trained by 2
gloo ranks under a real torchrun on shards of the model, follow one process's loss curves; the checkpoints are
ordinary models that score what the stages logged. One process trains the model itself whatever the strategy;
the two-rank runs are in a copy of the data stage's project."""

from __future__ import annotations

import contextlib
import io
import shutil

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch.distributed.tensor import DTensor

from steps import config, data, distill, teacher, tracking
from steps.compression.training import accuracy
from steps.core import datasets
from steps.core.names import ModelRole
from steps.core.torchkit import load_model
from tests.steps.test_distill_ranks import _history, _raw
from tests.steps.test_lm_stages import documents

pytestmark = pytest.mark.integration  # two real torchrun launches, ~2.5 min on 2 busy cores: make test

LOSS_RTOL = 1e-5
"""Per-epoch train loss and validation perplexity, 2 sharded ranks vs 1 process: the same blocks per step and the
same mean gradient, but each rank sums its half of the batch before the reduce-scatter adds the halves (another
float order), carried on by every Adam step; the student's teacher is each project's own (as far apart as
that); measured 4e-8 (teacher, 2 epochs) and 2e-7 (student, 3 epochs)."""


def _fsdp_raw(docs, experiment: str, processes: int) -> dict:
    raw = _raw(docs, experiment, processes)
    raw["resources"]["strategy"] = "fsdp"  # unused by the one-process run
    raw["teacher"]["train"].update(epochs=2)
    raw["distill"].update(hidden_states={"weight": 1.0})  # a projection of the student's width to the teacher's
    return raw


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{processes: (project, {stage: result}, {stage: what the ranks wrote on stderr})}: the data stage once, then
    teacher and distill on 1 process and on 2 fsdp ranks, each in its own copy of the project."""
    base = tmp_path_factory.mktemp("fsdp-ranks")
    docs = documents(base / "docs")
    one, two = base / "one", base / "two"
    data.run(config.validate(_fsdp_raw(docs, "data", 1), stage="data"), one)
    shutil.copytree(one, two, symlinks=True)
    runs = {}
    for processes, root in ((1, one), (2, two)):
        results, logs = {}, {}
        for name, stage in (("teacher", teacher), ("distill", distill)):
            params = config.validate(_fsdp_raw(docs, f"{name}-{processes}", processes), stage=name)
            with contextlib.redirect_stderr(io.StringIO()) as log:  # the launcher passes the ranks' stderr on
                results[name] = stage.run(params, root)
            logs[name] = log.getvalue()
        runs[processes] = root, results, logs
    return runs


@pytest.mark.parametrize(("name", "layers"), [("teacher", 2), ("distill", 1)])
def test_the_ranks_train_shards_of_the_decoder_layers(trained, name, layers):
    _, _, logs = trained[2]
    assert f"fsdp: HFCausalLM sharded over 2 ranks: LlamaDecoderLayer x{layers} one by one" in logs[name]


@pytest.mark.parametrize("name", ["teacher", "distill"])
def test_two_sharded_ranks_follow_one_process_loss_curve(trained, name):
    curves = {}
    for processes, (root, results, _) in trained.items():
        tracking.use_store(root)
        run_id = results[name].mlflow_run_id
        curves[processes] = _history(run_id, "train_loss"), _history(run_id, "val_perplexity")
        assert MlflowClient().get_run(run_id).data.params["resources.strategy"] == "fsdp"
    (loss_one, ppl_one), (loss_two, ppl_two) = curves[1], curves[2]
    assert len(loss_two) == {"teacher": 2, "distill": 3}[name]
    assert loss_two[-1] < loss_two[0]  # it learned
    assert loss_two == pytest.approx(loss_one, rel=LOSS_RTOL)
    assert ppl_two == pytest.approx(ppl_one, rel=LOSS_RTOL)


@pytest.mark.parametrize(("name", "role"), [("teacher", ModelRole.TEACHER), ("distill", ModelRole.STUDENT)])
def test_the_sharded_runs_checkpoint_is_an_ordinary_model_scoring_what_was_logged(trained, name, role):
    root, results, _ = trained[2]
    model, _ = load_model(root, role, torch.device("cpu"))
    assert type(model).__name__ == "HFCausalLM" and not any(isinstance(p, DTensor) for p in model.parameters())
    val = datasets.load_splits(root, ("val",))["val"]
    assert accuracy(model, val) == results[name].val_accuracy
    tracking.use_store(root)
    logged = MlflowClient().get_run(results[name].mlflow_run_id).data.metrics["final_val_accuracy"]
    assert logged == pytest.approx(results[name].val_accuracy)
