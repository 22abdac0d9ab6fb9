"""What the ranks of a stage inherit from the process that starts torchrun: the checkout first on PYTHONPATH, and
MLflow's store the user's choice, never the store MLflow wrote into this process's environment for the last project
it recorded into (which sent a second project's distill run into the first project's store)."""

from __future__ import annotations

import os

from steps.core import launch


def test_ranks_do_not_inherit_the_store_mlflow_left_in_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/project-a/mlflow.db")
    env = launch._env(None)
    assert "MLFLOW_TRACKING_URI" not in env
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(launch.CODE_ROOT)


def test_ranks_record_into_the_server_the_user_chose(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/project-a/mlflow.db")
    assert launch._env("http://mlflow:5000")["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
