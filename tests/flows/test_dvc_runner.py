"""The second runner: `dvc repro` runs the same stages through `python -m steps.<name>`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.checkout import copy_project
from steps.core.dag import STAGE_NAMES
from steps.core.layout import REPORT
from steps.core.names import Alias
from tests.helpers import tiny_params

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def test_dvc_repro_runs_every_stage_then_nothing(tmp_path, idx_dir):
    root = copy_project(tmp_path / "repro", tiny_params(idx_dir, experiment="repro"))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    first = subprocess.run([str(BIN / "dvc"), "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name in STAGE_NAMES:
        assert f"Running stage '{name}'" in first.stdout
    # each stage's progress on its stderr (steps/core/stage.py), which DVC passes through
    for line in ("teacher: epoch 2/2, train_loss ", "prune: round 2/2, ", "distill: epoch 2/2, train_loss ",
                 "latency: batch_1 timed, "):
        assert line in first.stderr, first.stderr[-3000:]
    assert set(yaml.safe_load((root / "dvc.lock").read_text())["stages"]) == set(STAGE_NAMES)
    assert (root / REPORT).is_file()

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    version = MlflowClient(uri, uri).get_model_version_by_alias("fashion-student", Alias.CHAMPION)
    assert version.version == "1" or int(version.version) == 1

    again = subprocess.run([str(BIN / "dvc"), "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert "Running stage" not in again.stdout
