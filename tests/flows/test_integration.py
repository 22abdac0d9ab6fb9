"""The whole pipeline on real Fashion-MNIST (a small subset), through the real CLI:
Prefect (ephemeral server), MLflow (SQLite registry), DVC (local remote). No mocks."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.checkout import copy_project
from steps.core.dag import STAGE_NAMES
from steps.core.layout import DATA_DIR, REPORT
from steps.core.names import Alias, Tag
from tests.helpers import require_fashion_mnist, shrinkflow, small_real_params, stage_states

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def registry(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", registry_uri=f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    raw = require_fashion_mnist()
    return copy_project(tmp_path_factory.mktemp("project"), small_real_params(raw))


FAKE_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKESHRINKFLOW01",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-7f3a9c2e-do-not-log",
    "MLFLOW_TRACKING_PASSWORD": "fake-mlflow-password-b81d",
}


@pytest.fixture(scope="module")
def first_run(project: Path) -> subprocess.CompletedProcess:
    result = shrinkflow(project, "run", extra_env=FAKE_SECRETS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_first_run_runs_every_stage(first_run):
    assert stage_states(first_run.stdout) == {name: "Completed" for name in STAGE_NAMES}
    assert "promoted: fashion-student v1 -> @champion" in first_run.stdout


def test_report_has_all_three_models(project, first_run):
    report = json.loads((project / REPORT).read_text())
    models = report["models"]
    assert set(models) == {"teacher", "pruned", "student"}
    assert models["student"]["parameters"] < models["teacher"]["parameters"]
    assert models["pruned"]["nonzeros"] < models["teacher"]["nonzeros"]
    assert models["student"]["accuracy"] > 0.5  # 10 classes: chance is 0.1


def test_champion_is_registered_with_lineage(project, first_run):
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    data_out = next(o for o in lock["stages"]["data"]["outs"] if o["path"] == DATA_DIR)
    version = registry(project).get_model_version_by_alias("fashion-student", Alias.CHAMPION)
    assert version.tags[Tag.DATA_HASH] == data_out["md5"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert version.tags[Tag.GIT_COMMIT] == head
    assert len(version.tags[Tag.PARAMS_HASH]) == 64


def test_dvc_agrees_nothing_is_stale_and_can_restore(project, first_run):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    status = subprocess.run([str(BIN / "dvc"), "status", "--quiet"], cwd=project, env=env, capture_output=True)
    assert status.returncode == 0, status.stdout
    assert set(yaml.safe_load((project / "dvc.lock").read_text())["stages"]) == set(STAGE_NAMES)
    # The remote holds what ran: wipe the outputs and the cache, pull them back, hash-checked.
    before = (project / DATA_DIR / "train.npz").read_bytes()
    shutil.rmtree(project / DATA_DIR)
    shutil.rmtree(project / ".dvc" / "cache")
    pull = subprocess.run([str(BIN / "dvc"), "pull", "--quiet"], cwd=project, env=env, capture_output=True, text=True)
    assert pull.returncode == 0, pull.stderr
    assert (project / DATA_DIR / "train.npz").read_bytes() == before


def test_rerun_with_nothing_changed_is_all_cached(project, first_run):
    result = shrinkflow(project, "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert stage_states(result.stdout) == {name: "Cached" for name in STAGE_NAMES}
    versions = registry(project).search_model_versions("name='fashion-student'")
    assert len(versions) == 1  # a cached promote registers nothing new


def test_without_a_prefect_api_the_run_starts_its_own_temporary_server_first(project, first_run):
    """As a user runs it (no PREFECT_API_URL): `shrinkflow run` starts Prefect's temporary server itself, before it
    imports Prefect (flows/runtime.py), instead of Prefect's client starting one at its first request."""
    log = project / ".shrinkflow" / "prefect" / "temporary-server.log"
    log.unlink(missing_ok=True)
    result = shrinkflow(project, "run", "--force", extra_env={"PREFECT_API_URL": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert stage_states(result.stdout) == {name: "Cached" for name in STAGE_NAMES}
    assert log.is_file()  # only flows.prefect_server.temporary writes it
    assert "Starting temporary server" not in result.stdout + result.stderr  # what Prefect's own server logs
    assert "View at" not in result.stdout + result.stderr  # no link to a UI that is not served


def test_a_no_change_run_answers_without_prefect_mlflow_torch_or_dvc(project, first_run, tmp_path):
    """The local no-change path imports none of them: here each one fails to import, and the run still answers."""
    for name in ("prefect", "mlflow", "torch", "dvc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} imported on the no-change path')")
    result = shrinkflow(project, "run", extra_env={"PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}",
                                                   "PREFECT_API_URL": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert stage_states(result.stdout) == {name: "Cached" for name in STAGE_NAMES}
    assert re.search(r"up to date \(nothing changed since \S+, run [0-9a-f-]{36}\)", result.stdout)
    assert "student" in result.stdout  # the last results table


def test_changed_param_reruns_from_first_affected_stage(project, first_run):
    result = shrinkflow(project, "run", "-S", "distill.alpha=0.3")
    assert result.returncode == 0, result.stderr[-3000:]
    states = stage_states(result.stdout)
    assert [states[s] for s in ("data", "teacher", "prune")] == ["Cached"] * 3
    assert [states[s] for s in ("distill", "evaluate", "promote")] == ["Completed"] * 3
    assert yaml.safe_load((project / "params.yaml").read_text())["distill"]["alpha"] == 0.3
    assert len(registry(project).search_model_versions("name='fashion-student'")) == 2


def test_bad_params_stop_before_any_work(tmp_path):
    raw = require_fashion_mnist()
    params = small_real_params(raw)
    params["teacher"]["train"]["epoks"] = 3
    params["distill"]["alpha"] = "high"
    root = copy_project(tmp_path / "bad", params)
    result = shrinkflow(root, "run")
    assert result.returncode == 2
    assert "teacher.train.epoks: unknown key" in result.stderr
    assert "distill.alpha" in result.stderr and "'high'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "mlflow.db").exists() and not (root / DATA_DIR).exists()
    assert not (root / ".shrinkflow").exists() or not any((root / ".shrinkflow").rglob("prefect.db"))


def test_bad_override_changes_nothing(project, first_run):
    before = (project / "params.yaml").read_text()
    result = shrinkflow(project, "run", "-S", "prune.target_sparsity=1.5")
    assert result.returncode == 2
    assert "prune.target_sparsity" in result.stderr and "1.5" in result.stderr
    assert (project / "params.yaml").read_text() == before


def test_credentials_in_the_environment_leak_nowhere(project, first_run):
    """The first run had fake credentials in its environment: none may reach logs, MLflow or files."""
    places = {"stdout": first_run.stdout, "stderr": first_run.stderr}
    for path in project.rglob("*"):
        if path.is_file() and ".git" not in path.parts and path.stat().st_size < 50_000_000:
            places[str(path.relative_to(project))] = path.read_bytes().decode("latin-1")
    assert "mlflow.db" in places and any(p.startswith("mlartifacts") for p in places)
    for name, secret in FAKE_SECRETS.items():
        leaks = [where for where, text in places.items() if secret in text]
        assert not leaks, f"{name} leaked into {leaks}"


def test_a_wiped_registry_is_noticed_and_promote_reruns(project, first_run):
    """promote's output lives in the registry: a cached promote whose version is gone runs again."""
    (project / "mlflow.db").unlink()
    result = shrinkflow(project, "run")
    assert result.returncode == 0, result.stderr[-3000:]
    states = stage_states(result.stdout)
    assert [states[s] for s in ("data", "teacher", "prune", "distill", "evaluate")] == ["Cached"] * 5
    assert states["promote"] == "Completed"
    # A fresh connection: this process's MLflow client still holds the deleted database file open.
    with sqlite3.connect(project / "mlflow.db") as db:
        aliases = db.execute("SELECT alias, version FROM registered_model_aliases WHERE name = 'fashion-student'")
        assert dict(aliases.fetchall()) == {"champion": 1}
