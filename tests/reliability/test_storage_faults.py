"""A DVC remote on S3 (moto's real HTTP endpoint) that goes away: bounded retries, a clear failure
naming the remote, and nothing registered for outputs that could not be published."""

from __future__ import annotations

import subprocess
from pathlib import Path

import boto3
import pytest
from mlflow.tracking import MlflowClient
from moto.server import ThreadedMotoServer

from benchmarks.checkout import copy_project
from steps.core.names import Alias, Tag
from tests.helpers import BIN, cli_env, shrinkflow, tiny_params
from tests.reliability.registry_safety import assert_registry_safe, local_uri

pytestmark = pytest.mark.integration

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
ONE_BOTO_ATTEMPT = {"AWS_MAX_ATTEMPTS": "1"}
"""botocore retries a refused connection itself, with back-off (7-12 s per push here); the retries under test
are the pipeline's own, so each of its push attempts makes one request and fails at once."""
BUCKET = "shrinkflow-test"


@pytest.fixture
def s3():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in CREDENTIALS.items()
                                                          if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield server, endpoint, client
    server.stop()  # idempotent enough: the test may have stopped it already


def dvc(root: Path, *args: str) -> None:
    subprocess.run([str(BIN / "dvc"), *args], cwd=root, env=cli_env(), check=True, capture_output=True)


def test_unreachable_s3_remote_fails_publishing_and_registers_nothing(tmp_path: Path, idx_dir: Path, s3):
    server, endpoint, client = s3
    root = copy_project(tmp_path / "project", tiny_params(idx_dir))
    dvc(root, "remote", "add", "--default", "--force", "s3", f"s3://{BUCKET}/dvc")
    dvc(root, "remote", "modify", "--local", "s3", "endpointurl", endpoint)  # the port never goes in .dvc/config

    first = shrinkflow(root, "run", extra_env=CREDENTIALS)
    assert first.returncode == 0, first.stderr[-3000:]
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="dvc/")["KeyCount"] > 0

    server.stop()
    second = shrinkflow(root, "run", "-S", "distill.alpha=0.2", "-S", "storage.retry_backoff_s=0.1",
                        extra_env={**CREDENTIALS, **ONE_BOTO_ATTEMPT})
    assert second.returncode == 1
    assert "publishing to the DVC remote failed" in second.stderr
    assert f"s3://{BUCKET}/dvc" in second.stderr
    attempts = (second.stdout + second.stderr).count("Task run failed with exception: RemoteUnavailable")
    assert attempts == 3  # one try and two bounded retries (with back-off), then a clean stop

    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry = MlflowClient(uri, uri)
    versions = registry.search_model_versions("name='fashion-student'")
    assert len(versions) == 1  # the second student was never registered
    champion = registry.get_model_version_by_alias("fashion-student", Alias.CHAMPION)
    assert champion.tags[Tag.DECISION] == "promoted"
    assert registry.list_artifacts(champion.run_id)  # its artifacts are there
    assert assert_registry_safe(local_uri(root)) == 1
