"""`shrinkflow sweep` through the real CLI: a real Dask LocalCluster of 2 worker processes, Prefect, MLflow
(SQLite) and DVC on tiny synthetic data; plus the grid parsing and validation, and the Pareto mask."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest
import yaml

from benchmarks.checkout import copy_project
from steps import config
from steps.core import frontier
from steps.core.layout import metrics_path, model_path
from steps.core.names import Tag
from tests.helpers import default_params, shrinkflow, tiny_params, write_params

GRID = ("-S", "prune.target_sparsity=0.5,0.8", "-S", "distill.temperature=3")


def client(root: Path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def runs(root: Path, where: str) -> list:
    c = client(root)
    exp = c.get_experiment_by_name("sweep").experiment_id
    return c.search_runs([exp], filter_string=where)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, idx_dir):
    root = copy_project(tmp_path_factory.mktemp("sweep"), tiny_params(idx_dir, experiment="sweep"))
    result = shrinkflow(root, "sweep", *GRID, "--workers", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    (parent,) = runs(root, f"tags.`{Tag.SWEEP}` = 'parent'")
    return root, result, parent


@pytest.mark.integration
@pytest.mark.integration
def test_each_member_is_a_nested_run_with_its_stages_nested_under_it(swept):
    root, _, parent = swept
    assert parent.info.status == "FINISHED"
    members = sorted(runs(root, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"),
                     key=lambda r: r.data.tags[Tag.SWEEP])
    assert [m.data.tags[Tag.SWEEP] for m in members] == ["m01", "m02"]
    assert [m.data.params["prune.target_sparsity"] for m in members] == ["0.5", "0.8"]
    assert all(m.info.status == "FINISHED" and m.data.params["distill.temperature"] == "3" for m in members)
    for member in members:
        assert {"student.accuracy", "pruned.latency_p50_ms", "pruned.nonzeros"} <= set(member.data.metrics)
        assert Tag.FRONTIER in member.data.tags
        stages = runs(root, f"tags.`mlflow.parentRunId` = '{member.info.run_id}'")
        assert sorted(s.data.tags[Tag.STAGE] for s in stages) == ["distill", "prune"]
        prune_run = next(s for s in stages if s.data.tags[Tag.STAGE] == "prune")
        # the member really trained with its own setting
        assert prune_run.data.params["prune.target_sparsity"] == member.data.params["prune.target_sparsity"]
    sparse = {m.data.tags[Tag.SWEEP]: m.data.metrics["pruned.nonzeros"] for m in members}
    assert sparse["m02"] < sparse["m01"]  # 80% sparsity keeps fewer weights than 50%


@pytest.mark.integration
@pytest.mark.integration
def test_shared_stages_ran_once_in_the_project(swept):
    root, result, parent = swept
    assert "shared stages: data=Completed, teacher=Completed" in result.stdout
    assert len(runs(root, f"tags.`{Tag.STAGE}` = 'teacher'")) == 1
    assert parent.data.tags[Tag.TEACHER_RUN] == runs(root, f"tags.`{Tag.STAGE}` = 'teacher'")[0].info.run_id
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"data", "teacher"}  # recorded by DVC like `shrinkflow run` does; members are not
    workdir = root / ".shrinkflow" / "sweeps" / parent.info.run_id
    for member in ("m01", "m02"):
        assert not (workdir / member / metrics_path("teacher")).exists()  # no member trained a teacher
        assert (workdir / member / model_path("teacher")).read_bytes() == (root / model_path("teacher")).read_bytes()
        member_params = yaml.safe_load((workdir / member / "params.yaml").read_text())
        assert member_params["distill"]["temperature"] == 3


@pytest.mark.integration
@pytest.mark.integration
def test_the_frontier_is_logged_to_the_parent_and_nothing_is_promoted(swept):
    root, result, parent = swept
    artifacts = Path(urlparse(parent.info.artifact_uri).path)
    table = json.loads((artifacts / "sweep" / "frontier.json").read_text())
    data = pd.DataFrame(table["data"], columns=table["columns"]).set_index("model")
    assert set(data.index) == {"teacher", "m01 pruned", "m01 student", "m02 pruned", "m02 student"}
    for cost, flag in frontier.FRONTS.items():
        assert data[flag].any()
        assert data[flag].tolist() == frontier.pareto_mask(data[cost], data["accuracy"]).tolist()
    assert (artifacts / "sweep" / "pareto.png").stat().st_size > 10_000
    assert "Pareto frontier" in result.stdout and "m02 student" in result.stdout
    assert client(root).search_registered_models() == []  # members are experiments: no registration, no alias


def test_grid_from_the_command_line():
    grid = config.parse_grid(["prune.target_sparsity=0.5,0.7,0.9", "distill.student.hidden=[16],[32, 8]"])
    assert grid == {"prune.target_sparsity": [0.5, 0.7, 0.9], "distill.student.hidden": [[16], [32, 8]]}
    members = config.sweep_members(config.validate(default_params()), grid)
    assert len(members) == 6
    assert members[-1].overrides == {"prune.target_sparsity": 0.9, "distill.student.hidden": [32, 8]}
    assert members[-1].params.distill.student.hidden == [32, 8] and members[-1].params.prune.target_sparsity == 0.9


@pytest.mark.parametrize(("grid", "expected"), [
    ({"prune.target_sparsity": [0.5, 1.5]}, "prune.target_sparsity: Input should be less than 1 (got 1.5)"),
    ({"prune.sparsity": [0.5]}, "prune.sparsity: not a param"),
    ({"distill.alpha": ["high"]}, "distill.alpha: Input should be a valid number"),
    ({"teacher.train.epochs": [1, 2]}, "teacher.train.epochs: a sweep varies only prune.*, distill.*"),
    ({"distill.temperature": []}, "distill.temperature: no values"),
])
def test_bad_grids_are_refused_naming_the_key(grid, expected):
    with pytest.raises(config.ConfigError) as err:
        config.sweep_members(config.validate(default_params()), grid)
    assert expected in str(err.value)


def test_a_bad_sweep_section_makes_params_yaml_invalid(tmp_path):
    raw = default_params()
    raw["sweep"]["grid"] = {"prune.target_sparsity": [0.5, 2.0]}
    write_params(tmp_path, raw)
    with pytest.raises(config.ConfigError) as err:
        config.load(tmp_path)
    assert "sweep.grid" in str(err.value) and "prune.target_sparsity" in str(err.value)


def test_sweep_refuses_a_bad_grid_before_any_work(tmp_path, idx_dir):
    root = copy_project(tmp_path / "p", tiny_params(idx_dir))
    result = shrinkflow(root, "sweep", "-S", "prune.target_sparsity=0.5,1.5")
    assert result.returncode == 2
    assert "prune.target_sparsity" in result.stderr and "1.5" in result.stderr
    assert not (root / ".shrinkflow").exists() and not (root / "mlflow.db").exists()


def test_pareto_mask_keeps_only_undominated_points():
    cost = pd.Series([10.0, 5.0, 5.0, 1.0, 20.0])
    accuracy = pd.Series([0.90, 0.90, 0.85, 0.80, 0.95])
    # 0 is dominated by 1 (same accuracy, cheaper); 2 by 1; 3 is cheapest; 4 is most accurate
    assert frontier.pareto_mask(cost, accuracy).tolist() == [False, True, False, True, True]
