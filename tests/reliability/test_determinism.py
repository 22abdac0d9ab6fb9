"""Same params and data give bit-identical models and metrics on CPU: the base for audits."""

from pathlib import Path

from steps import config, data, distill, prune, teacher
from steps.core.hashing import sha256
from steps.core.names import ModelRole
from steps.core.layout import model_path
from tests.helpers import tiny_params


def run_chain(root: Path, params: config.Params) -> dict:
    data.run(params, root)
    metrics = {"teacher": teacher.run(params, root).to_dict(), "prune": prune.run(params, root).to_dict(),
               "distill": distill.run(params, root).to_dict()}
    for stage_metrics in metrics.values():
        stage_metrics.pop("mlflow_run_id")
    return metrics


def test_two_runs_are_bit_identical(tmp_path, idx_dir):
    params = config.validate(tiny_params(idx_dir, experiment="determinism"))
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert run_chain(first, params) == run_chain(second, params)
    for role in ModelRole:
        assert sha256(first / model_path(role)) == sha256(second / model_path(role)), role
