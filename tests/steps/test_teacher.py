from mlflow.tracking import MlflowClient

from steps import teacher, tracking
from steps.compression.regularization import near_zero_fraction
from steps.core.layout import metrics_path, model_path, spec_path
from steps.core.names import ModelRole, Tag
from steps.core.results import TeacherResult
from steps.core.torchkit import load_model
from tests.helpers import variant


def test_teacher_learns_and_logs(project_after, stage_params):
    root = project_after("data")
    result = teacher.run(stage_params, root)
    assert result.val_accuracy > 0.5  # synthetic classes are easy; chance is 0.1
    assert (root / model_path(ModelRole.TEACHER)).is_file() and (root / spec_path(ModelRole.TEACHER)).is_file()
    assert TeacherResult.read(root / metrics_path("teacher")) == result
    tracking.use_store(root)
    run = MlflowClient().get_run(result.mlflow_run_id)
    assert run.data.tags[Tag.STAGE] == "teacher"
    assert run.info.artifact_uri.startswith((root / "mlartifacts").as_uri())  # inside the project, not ./mlruns
    assert run.data.params["teacher.train.epochs"] == "2"
    history = MlflowClient().get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]


def test_teacher_with_l1_logs_emerging_sparsity(project_after, stage_params):
    root = project_after("data")
    sparse = variant(stage_params, teacher={"train": {**stage_params.teacher.train.model_dump(),
                                                      "l1": {"coefficient": 0.01, "target": "weights"}}})
    result = teacher.run(sparse, root)
    history = MlflowClient().get_metric_history(result.mlflow_run_id, "near_zero_fraction")
    assert len(history) == stage_params.teacher.train.epochs
    with_l1 = near_zero_fraction(load_model(root, ModelRole.TEACHER)[0], "weights")
    teacher.run(stage_params, root)
    without = near_zero_fraction(load_model(root, ModelRole.TEACHER)[0], "weights")
    assert with_l1 > without + 0.05
