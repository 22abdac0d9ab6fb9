"""resources.processes: 2 on CPU: the teacher stage starts itself under a real torchrun (gloo, 2 ranks) and trains
with DDP on the same global batch as one process; one MLflow run, one checkpoint; a failing rank fails the stage
naming it, and the stage reruns. The ranks are real processes (each imports torch and the stage): about 10 s a
launch on 2 busy cores."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from steps import config, teacher, tracking
from steps.compression.training import accuracy
from steps.core import datasets
from steps.core.launch import RankFailed
from steps.core.layout import metrics_path
from steps.core.names import ModelRole
from steps.core.results import TeacherResult
from steps.core.torchkit import load_model
from tests.helpers import the_one_ranks_run

pytestmark = pytest.mark.integration  # real torchrun launches (~45 s): make test, not make check

LOSS_RTOL = 1e-5
"""Per-epoch train loss, 2 ranks vs 1 process: the same samples per step and the same mean gradient, but a
rank sums its half of the batch before the all-reduce adds the halves (another float order); measured 1e-8 after
one epoch, 3e-7 after three."""

DYING_MODEL = '''
import os
import signal
from torch import nn


class Dies(nn.Module):
    """An MLP whose rank 1 exits with code 3 on its second training forward pass (after one update), while rank 0
    waits there until torchrun stops it by a signal (as a rank blocked in a collective would be): it cannot end its
    MLflow run itself."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
        self.calls = 0

    def forward(self, x):
        self.calls += self.training
        if self.training and self.calls == 2 and os.environ.get("RANK") == "1":
            os._exit(3)
        if self.training and self.calls == 2 and os.environ.get("RANK") == "0":
            signal.pause()
        return self.net(x)


def make():
    return Dies()
'''


def _params(base: config.Params, experiment: str, processes: int, **teacher) -> config.Params:
    raw = base.model_dump(mode="json")
    raw["threads"] = 1  # two ranks share the two cores
    raw["resources"] = {**raw["resources"], "processes": processes}
    raw["tracking"]["experiment"] = experiment
    raw["teacher"]["arch"] = {"name": "mlp", "hidden": [32]}  # no BatchNorm: its statistics would be per shard
    raw["teacher"]["train"] = {**raw["teacher"]["train"], "epochs": 3, "batch_size": 50}
    raw["teacher"].update(teacher)
    return config.validate(raw)


def _history(run_id: str, metric: str) -> list[float]:
    return [m.value for m in sorted(MlflowClient().get_metric_history(run_id, metric), key=lambda m: m.step)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _snapshots, stage_params):
    """The teacher on one process, then on two ranks (500 training samples: the last batch of each epoch 50)."""
    root = _snapshots.restore("data")
    one = teacher.run(_params(stage_params, "one-process", 1), root)
    two = teacher.run(_params(stage_params, "two-ranks", 2), root)
    return root, one, two


def test_two_ranks_follow_one_process(trained):
    root, one, two = trained
    tracking.use_store(root)
    loss_one, loss_two = _history(one.mlflow_run_id, "train_loss"), _history(two.mlflow_run_id, "train_loss")
    assert len(loss_two) == 3
    assert loss_two == pytest.approx(loss_one, rel=LOSS_RTOL)
    assert loss_two[-1] < loss_two[0]  # it learned, on both
    # 100 validation samples: one prediction flipped by float order is 0.01
    assert abs(two.val_accuracy - one.val_accuracy) <= 0.02


def test_two_ranks_record_once(trained):
    root, _, two = trained
    the_one_ranks_run(root, "two-ranks", "teacher", two.mlflow_run_id)
    assert TeacherResult.read(root / metrics_path("teacher")) == two
    assert sorted(p.name for p in (root / "models").iterdir()) == ["teacher.json", "teacher.safetensors"]


def test_two_ranks_score_validation_as_one_process_does(trained):
    """Each rank classifies its half of the validation split and the counts are summed: the saved model's
    accuracy, bit for bit, as one process computes it and as the last epoch logged it."""
    root, _, two = trained  # before the failing-rank test, which restores the project into the same folder
    model, _ = load_model(root, ModelRole.TEACHER)
    alone = accuracy(model, datasets.load_splits(root, ("val",))["val"])
    tracking.use_store(root)
    assert _history(two.mlflow_run_id, "val_accuracy")[-1] == alone == two.val_accuracy


def test_a_failing_rank_fails_the_stage_naming_it_and_the_rerun_succeeds(_snapshots, stage_params):
    root = _snapshots.restore("data")
    (root / "dying.py").write_text(DYING_MODEL)
    dying = _params(stage_params, "dying", 2, arch={"name": "custom", "factory": "dying:make"})
    with pytest.raises(RankFailed, match=r"teacher stage failed: rank 1 of 2 exited with code 3") as failed:
        teacher.run(dying, root)
    # rank 0 was stopped by torchrun's signal inside its run: the launching process ended that run FAILED
    tracking.use_store(root)
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("dying").experiment_id])
    assert [(r.info.run_id, r.info.status) for r in runs] == [(failed.value.run_id, "FAILED")]
    assert not (root / metrics_path("teacher")).exists()
    assert not (root / "models").exists() or not any((root / "models").iterdir())
    rerun = teacher.run(_params(stage_params, "dying", 2), root)
    assert TeacherResult.read(root / metrics_path("teacher")) == rerun
    assert rerun.val_accuracy > 0.5
