"""An unreachable tracking server fails the run quickly, naming the stage and the address."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from benchmarks.checkout import copy_project
from steps.core.layout import model_path
from steps.core.names import ModelRole
from tests.helpers import shrinkflow, tiny_params

pytestmark = pytest.mark.integration


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_server_down_fails_the_first_tracking_stage(tmp_path: Path, idx_dir: Path):
    root = copy_project(tmp_path / "project", tiny_params(idx_dir))
    uri = f"http://127.0.0.1:{closed_port()}"
    result = shrinkflow(root, "run", extra_env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 1
    # The first request is the pipeline's parent run, opened once the data stage is done, before the teacher.
    message = " ".join(result.stderr.split())
    assert "opening the pipeline's MLflow run (before stage 'teacher') failed" in message
    assert f"MLflow tracking server {uri} is unreachable" in message
    assert not (root / model_path(ModelRole.TEACHER)).exists()
