"""A stage whose ranks torchrun stopped leaves no MLflow run RUNNING: rank 0 tells the launching process its run's
id as the run opens (launch.record_run_id), and stagekit.ranks.launched ends that run FAILED when RankFailed comes
back. torchrun itself is replaced here by what it returns (tests/core/test_launch.py runs the real one)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from steps import tracking
from steps.core import launch
from steps.core.launch import RankFailed
from steps.stagekit import ranks


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    tracking.use_store(root)
    return root


def _open_run(root, experiment: str) -> str:
    """A run as rank 0 leaves it when a signal ends its process: created, never terminated."""
    tracking.use_store(root)
    return MlflowClient().create_run(tracking.experiment_id(experiment)).info.run_id


def _fails(run_id: str):
    def torchrun(*args, **kwargs):
        raise RankFailed("teacher stage failed: rank 1 of 2 exited with code 3", run_id=run_id)
    return torchrun


def test_the_run_failed_ranks_left_running_ends_failed(store, monkeypatch):
    run_id = _open_run(store, "killed")
    monkeypatch.setattr(launch, "torchrun", _fails(run_id))
    with pytest.raises(RankFailed, match="rank 1 of 2 exited with code 3"):
        ranks.launched("teacher", None, store, None, None)
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FAILED" and run.info.end_time is not None


def test_a_run_rank_0_ended_itself_keeps_its_status(store, monkeypatch):
    run_id = _open_run(store, "ended")
    MlflowClient().set_terminated(run_id, "FINISHED")  # e.g. a rank failed after rank 0 had closed its run
    monkeypatch.setattr(launch, "torchrun", _fails(run_id))
    with pytest.raises(RankFailed):
        ranks.launched("teacher", None, store, None, None)
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"
    monkeypatch.setattr(launch, "torchrun", _fails(""))  # ranks that failed before rank 0 opened a run
    with pytest.raises(RankFailed):
        ranks.launched("teacher", None, store, None, None)


def test_rank_0_leaves_its_run_id_where_the_launcher_reads_it(tmp_path, monkeypatch):
    monkeypatch.delenv(launch.RUN_ID_FILE_ENV, raising=False)
    launch.record_run_id("abc123")  # one process, or ranks a scheduler started: nowhere to write
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(launch.RUN_ID_FILE_ENV, str(tmp_path / "run_id"))
    launch.record_run_id("abc123")
    assert (tmp_path / "run_id").read_text() == "abc123"
    assert [p.name for p in tmp_path.iterdir()] == ["run_id"]  # no temporary file left beside it


def test_a_store_that_cannot_end_the_run_does_not_hide_the_ranks_failure(store, monkeypatch, caplog):
    """The store may be why the rank died: its fault is warned about, the rank's failure is what the stage raises."""
    def unreachable(run_id):
        raise ConnectionError("tracking server unreachable")

    monkeypatch.setattr(tracking, "fail_if_running", unreachable)
    monkeypatch.setattr(launch, "torchrun", _fails("some-run"))
    with pytest.raises(RankFailed, match="rank 1 of 2 exited with code 3"):
        ranks.launched("teacher", None, store, None, None)
    assert "could not mark MLflow run some-run FAILED" in caplog.text and "unreachable" in caplog.text


def test_rank_0_names_its_run_before_logging_its_params(store, tmp_path, monkeypatch):
    """A rank that dies while its params are logged (slow against a remote server) must still be found."""
    monkeypatch.setenv(launch.RUN_ID_FILE_ENV, str(tmp_path / "run_id"))
    seen = {}

    def on_open(run_id: str) -> None:
        launch.record_run_id(run_id)
        seen["params"] = dict(MlflowClient().get_run(run_id).data.params)

    with tracking.open_run(store, "named-early", "teacher", {"a": {"b": 1}}, {}, on_open=on_open) as run_id:
        pass
    assert (tmp_path / "run_id").read_text() == run_id
    assert seen["params"] == {} and MlflowClient().get_run(run_id).data.params == {"a.b": "1"}
