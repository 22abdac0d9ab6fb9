"""The whole flow on the services profile, through the CLI, against real processes: an MLflow server on
PostgreSQL with S3 artifacts, a Prefect server on PostgreSQL, and DVC on S3 (moto's HTTP endpoint).
Then the faults: S3 or MLflow down at the start, and S3 going down in the middle of the push."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow.tracking import MlflowClient

from benchmarks.checkout import copy_project
from flows.prefect_server import ServerProcess
from steps.core.dag import STAGE_NAMES
from steps.core.layout import DATA_DIR
from steps.core.names import Alias, Tag
from tests.helpers import BIN, cli_env, shrinkflow, stage_states, tiny_params
from tests.servers import (
    S3,
    free_port,
    mlflow_server,
    postgres_database,
    postgres_url,
    prefect_server,
    s3_endpoint,
)

pytestmark = pytest.mark.integration

BUCKET = "shrinkflow-services"
MODEL = "fashion-student"
# moto accepts any key; a distinctive one lets the test look for it wherever it must not be.
SECRET = "services-secret-5c1e9a7f-never-log-me"


@dataclass
class Stack:
    s3: S3
    mlflow: ServerProcess
    prefect: ServerProcess

    def env(self, **changes: str) -> dict[str, str]:
        """What a user exports for the services profile (infra/shrinkflow.env.example)."""
        env = {**self.s3.env, "AWS_SECRET_ACCESS_KEY": SECRET, "MLFLOW_TRACKING_URI": self.mlflow.url,
               "PREFECT_API_URL": self.prefect.url, "SHRINKFLOW_DVC_REMOTE": f"s3://{BUCKET}/dvc"}
        return {**env, **changes}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    work = tmp_path_factory.mktemp("services")
    with (
        s3_endpoint(BUCKET) as s3,
        postgres_database("shrinkflow_mlflow") as mlflow_db,
        postgres_database("shrinkflow_prefect") as prefect_db,
        mlflow_server(postgres_url(mlflow_db, "psycopg"), f"s3://{BUCKET}/mlflow", work, env=s3.env) as mlflow,
        prefect_server(work, postgres_url(prefect_db, "asyncpg")) as prefect,
    ):
        yield Stack(s3, mlflow, prefect)


@pytest.fixture(scope="module")
def project(tmp_path_factory, idx_dir: Path) -> Path:
    return copy_project(tmp_path_factory.mktemp("project"), tiny_params(idx_dir, experiment="services"))


@pytest.fixture(scope="module")
def first_run(stack: Stack, project: Path) -> subprocess.CompletedProcess:
    result = shrinkflow(project, "run", "--profile", "services", extra_env=stack.env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def s3_keys(stack: Stack, prefix: str) -> set[str]:
    pages = stack.s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def registry(stack: Stack) -> MlflowClient:
    return MlflowClient(stack.mlflow.url, stack.mlflow.url)


def locked_data_hash(root: Path) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"]["data"]["outs"] if o["path"] == DATA_DIR)


def test_whole_flow_on_services(stack: Stack, project: Path, first_run):
    assert stage_states(first_run.stdout) == {name: "Completed" for name in STAGE_NAMES}
    champion = registry(stack).get_model_version_by_alias(MODEL, Alias.CHAMPION)
    # Lineage: the version names the DVC hash of the data it was trained on, and that hash is on S3.
    data_hash = locked_data_hash(project)
    assert champion.tags[Tag.DATA_HASH] == data_hash
    assert f"dvc/files/md5/{data_hash[:2]}/{data_hash[2:]}" in s3_keys(stack, "dvc/")
    # The model's artifacts went through the MLflow server to S3, none into the project.
    logged = registry(stack).get_logged_model(champion.source.removeprefix("models:/"))
    model_prefix = "mlflow/" + logged.artifact_location.split(":", 1)[1].strip("/") + "/"
    assert model_prefix + "MLmodel" in s3_keys(stack, model_prefix), (logged.artifact_location, s3_keys(stack, ""))
    assert any(k.endswith(f"{champion.run_id}/artifacts/decision.json") for k in s3_keys(stack, "mlflow/"))
    assert not (project / "mlartifacts").exists() and not (project / "mlflow.db").exists()
    # The flow ran on the Prefect server, not on an ephemeral one.
    runs = httpx.post(f"{stack.prefect.url}/flow_runs/filter", json={}).json()
    assert [r["state_type"] for r in runs] == ["COMPLETED"]


def test_fresh_clone_pulls_the_data_from_s3(stack: Stack, project: Path, first_run, tmp_path: Path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    shutil.copy2(project / "dvc.lock", clone / "dvc.lock")  # what a commit after the run would hold
    doctor = shrinkflow(clone, "doctor", "--profile", "services", extra_env=stack.env())
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert [line.split()[0] for line in doctor.stdout.splitlines()[1:]] == ["ok"] * 5
    assert stack.s3.endpoint in (clone / ".dvc" / "config.local").read_text()  # doctor set the remote up
    pull = subprocess.run([str(BIN / "dvc"), "pull", "-r", "s3", DATA_DIR], cwd=clone,
                          env={**cli_env(), **stack.env()}, capture_output=True, text=True)
    assert pull.returncode == 0, pull.stderr
    for split in ("train", "val", "test"):
        name = f"{DATA_DIR}/{split}.npz"
        assert (clone / name).read_bytes() == (project / name).read_bytes()
    for place, text in {"run": first_run.stdout + first_run.stderr, "doctor": doctor.stdout + doctor.stderr,
                        ".dvc/config.local": (clone / ".dvc" / "config.local").read_text()}.items():
        assert SECRET not in text, f"the secret key leaked into {place}"
    params = [v for r in registry(stack).search_runs([r.experiment_id for r in
              registry(stack).search_experiments()]) for v in r.data.params.values()]
    assert params and SECRET not in params


def test_s3_down_at_start_fails_doctor_and_run_fast(stack: Stack, tmp_path: Path, idx_dir: Path):
    with s3_endpoint() as dead:
        dead.server.stop()
    env = stack.env(AWS_ENDPOINT_URL=dead.endpoint)
    root = copy_project(tmp_path / "project", tiny_params(idx_dir, experiment="s3-down"))
    doctor = shrinkflow(root, "doctor", "--profile", "services", extra_env=env)
    assert doctor.returncode == 1
    lines = {line.split()[1]: line for line in doctor.stdout.splitlines()[1:]}
    assert lines["s3"].startswith("FAIL") and dead.endpoint in lines["s3"] and "unreachable" in lines["s3"]
    assert all(lines[name].startswith("ok") for name in ("env", "mlflow", "prefect", "dvc"))
    run = shrinkflow(root, "run", "--profile", "services", extra_env=env)
    assert run.returncode == 1
    assert "profile 'services' is not ready" in flat(run.stderr) and dead.endpoint in run.stderr
    assert not (root / DATA_DIR).exists()  # stopped before any stage


def test_missing_bucket_and_missing_settings_are_named(stack: Stack, tmp_path: Path, idx_dir: Path):
    root = copy_project(tmp_path / "project", tiny_params(idx_dir, experiment="no-bucket"))
    doctor = shrinkflow(root, "doctor", "--profile", "services",
                        extra_env=stack.env(SHRINKFLOW_DVC_REMOTE="s3://no-such-bucket/dvc"))
    assert doctor.returncode == 1
    assert "bucket 'no-such-bucket' does not exist" in flat(doctor.stdout)
    env = {k: v for k, v in stack.env().items() if k != "PREFECT_API_URL"}
    run = shrinkflow(root, "run", "--profile", "services", extra_env={**env, "PREFECT_API_URL": ""})
    assert run.returncode == 1 and "not set: PREFECT_API_URL" in flat(run.stderr)


def test_mlflow_server_down_is_named(stack: Stack, tmp_path: Path, idx_dir: Path):
    uri = f"http://127.0.0.1:{free_port()}"
    root = copy_project(tmp_path / "project", tiny_params(idx_dir, experiment="mlflow-down"))
    run = shrinkflow(root, "run", "--profile", "services", extra_env=stack.env(MLFLOW_TRACKING_URI=uri))
    assert run.returncode == 1
    assert f"MLflow tracking server {uri} is unreachable" in flat(run.stderr)
    assert not (root / DATA_DIR).exists()


def test_s3_going_down_during_the_push_registers_nothing(stack: Stack, project: Path, first_run):
    """Runs last in this module: S3 stays down afterwards."""
    before = {v.version for v in registry(stack).search_model_versions(f"name='{MODEL}'")}
    aliases = registry(stack).get_registered_model(MODEL).aliases

    def dvc_request(environ) -> bool:  # the first request of the push: the earlier stages used S3 for MLflow
        return environ["PATH_INFO"].startswith(f"/{BUCKET}/dvc/") or "prefix=dvc" in environ["QUERY_STRING"]

    stack.s3.server.go_down_on(dvc_request)
    # A new promote gate: every stage before it is cached, so the run goes straight to the push.
    run = shrinkflow(project, "run", "--profile", "services", "-S", "promote.min_accuracy=0.31", "-S",
                     "storage.push_retries=1", extra_env=stack.env())
    assert stack.s3.server.went_down.is_set()
    assert run.returncode == 1, run.stdout[-2000:]
    message = flat(run.stderr)
    assert "publishing to the DVC remote failed (before stage 'promote'" in message
    assert f"s3://{BUCKET}/dvc" in message and stack.s3.endpoint in message
    attempts = (run.stdout + run.stderr).count("Task run failed with exception: RemoteUnavailable")
    assert attempts == 2  # one try and storage.push_retries=1 retry, then a clean stop
    assert {v.version for v in registry(stack).search_model_versions(f"name='{MODEL}'")} == before
    assert registry(stack).get_registered_model(MODEL).aliases == aliases
