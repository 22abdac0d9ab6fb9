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


SUMMARY = """[2026-12-07 14:00:00] torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
Root Cause (first observed failure):
[0]:
  time      : 2026-12-07_14:00:00
  host      : box
  rank      : 1 (local_rank: 1)
  exitcode  : {code} (pid: 4242) {signal}
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================"""


def test_the_failed_rank_and_its_exit_are_read_from_torchruns_summary(tmp_path):
    exited = launch._failure("teacher", 2, 1, SUMMARY.format(code=3, signal=""), tmp_path)
    assert exited == "teacher stage failed: rank 1 of 2 exited with code 3"
    killed = launch._failure("distill", 2, 1, SUMMARY.format(code=-9, signal="SIGKILL"), tmp_path)
    assert killed == "distill stage failed: rank 1 of 2 exited with code -9 (SIGKILL)"

