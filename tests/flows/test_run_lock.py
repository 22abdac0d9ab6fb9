"""One run per checkout, and a run is the params it was asked for (issue 15), through the real CLI and flow."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from benchmarks.checkout import copy_project
from flows.runlock import RUN_LOCK, RunLocked, project_lock
from steps import tracking
from steps.core.dag import STAGE_NAMES
from steps.core.names import Tag
from steps.core.sqlite import CorruptDatabase
from steps.registry import audit
from steps.tracking.store import EXPERIMENT_KIND_TAG, MODEL_TRAINING
from tests.helpers import BIN, REPO, cli_env, shrinkflow, tiny_params

pytestmark = pytest.mark.integration


def start_run(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "shrinkflow"), "run", *args, "--root", str(root)], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after the deadline (a bounded wait, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def lock_held(root: Path) -> bool:
    path = root / RUN_LOCK
    return path.is_file() and path.read_text().strip() != ""


@pytest.fixture(scope="module")
def contended(tmp_path_factory, idx_dir) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """Two runs started by hand in one checkout: the first asks for temperature 3, the second for 5."""
    root = copy_project(tmp_path_factory.mktemp("lock") / "project", tiny_params(idx_dir, experiment="lock"))
    first = start_run(root, "-S", "distill.temperature=3")
    wait_for(lambda: lock_held(root), 120, "the first run to take the project lock")
    second = subprocess.run([str(BIN / "shrinkflow"), "run", "-S", "distill.temperature=5", "--lock-timeout", "2",
                             "--root", str(root)], env=cli_env(), capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=600)
    return root, subprocess.CompletedProcess(["pid", str(first.pid)], first.returncode, out, err), second


def test_the_second_run_waits_then_refuses_naming_the_holder(contended):
    root, first, second = contended
    assert second.returncode == 75, second.stderr  # EX_TEMPFAIL: a scheduler may retry
    message = " ".join(second.stderr.split())
    holder = f"pid {first.args[1]} (shrinkflow run -S distill.temperature=3 --root {root})"
    assert f"waiting up to 2 s for the project run lock, held by {holder}" in message
    assert "still held after 2 s" in message and "try again when it has finished" in message


def test_the_first_run_registers_what_it_was_asked_for(contended):
    root, first, _ = contended
    assert first.returncode == 0, first.stderr[-3000:]
    assert yaml.safe_load((root / "params.yaml").read_text())["distill"]["temperature"] == 3  # 5 never written
    tracking.use_store(root)
    version = tracking.model_version("fashion-student", 1)
    promote_run = tracking.run_record(version.tags[Tag.PROMOTE_RUN])
    distill_runs = [r for r in tracking.search_events("lock", f"tags.`{Tag.STAGE}` = 'distill'")]
    assert [r.data.params["distill.temperature"] for r in distill_runs] == ["3.0"]
    assert distill_runs[0].data.tags[Tag.PIPELINE_RUN] == promote_run.data.tags[Tag.PIPELINE_RUN]
    report = audit.run(root, "models:/fashion-student@champion", latency_tolerance=1e6)
    assert report.passed, [c for c in report.failures()]


def test_stage_runs_are_nested_under_one_pipeline_run_with_the_dataset(contended):
    root, _, _ = contended
    tracking.use_store(root)
    runs = tracking.search_events("lock", "")
    parents = [r for r in runs if Tag.PIPELINE_RUN in r.data.tags and Tag.STAGE not in r.data.tags]
    assert len(parents) == 1
    stages = [r for r in runs if Tag.STAGE in r.data.tags]
    assert {r.data.tags[Tag.MLFLOW_PARENT_RUN] for r in stages} == {parents[0].info.run_id}
    inputs = parents[0].inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest == tracking.model_version(
        "fashion-student", 1).tags[Tag.DATA_HASH]


def test_the_pipeline_run_shows_the_comparison_and_the_pareto_plot_in_a_model_training_experiment(contended):
    root, _, _ = contended
    tracking.use_store(root)
    parent = next(r for r in tracking.search_events("lock", "")
                  if Tag.PIPELINE_RUN in r.data.tags and Tag.STAGE not in r.data.tags)
    client = MlflowClient()
    shown = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"comparison.json", "per_class_recall.json", "pareto.png"} <= shown
    assert client.get_experiment(parent.info.experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING


def test_the_run_shows_every_epoch_once_in_its_task_log_and_each_dvc_line_once(contended):
    _, first, _ = contended
    printed = (first.stdout + first.stderr).splitlines()
    for epoch in (1, 2):
        lines = [line for line in printed if f"teacher: epoch {epoch}/2, train_loss " in line]
        assert len(lines) == 1 and "Task run 'teacher' - " in lines[0] and ", val_accuracy " in lines[0], lines
    assert sum(" - distill: epoch 2/2, train_loss " in line for line in printed) == 1
    assert sum(" - latency: batch_1 timed, " in line for line in printed) == 1  # evaluate's timing
    # one `dvc commit` per stage, each line printed once (DVC's own handler printed it raw as well)
    assert sum("Updating lock file 'dvc.lock'" in line for line in printed) == len(STAGE_NAMES)


def test_a_params_edit_during_the_run_fails_it_naming_the_file_and_registers_nothing(tmp_path, idx_dir):
    root = copy_project(tmp_path / "project", tiny_params(idx_dir, experiment="edited"))
    run = start_run(root)
    wait_for(lambda: (root / "models" / "teacher.safetensors").is_file(), 300, "the teacher stage to write")
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("temperature: 4.0", "temperature: 7.0"))
    _, err = run.communicate(timeout=600)
    assert run.returncode == 1, err[-3000:]
    message = " ".join(err.split())
    assert f"{params} changed during the run" in message and "rerun to use the new values" in message
    tracking.use_store(root)
    assert tracking.aliases("fashion-student") == {}
    assert not (root / "metrics" / "promotion.json").exists()


def test_sigkill_of_the_holder_frees_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from flows.runlock import project_lock\n"
        "with project_lock(Path(sys.argv[1]), 5):\n    print('held', flush=True); time.sleep(600)"), str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLocked, match=rf"still held after 0.5 s by pid {holder.pid} \("):
        with project_lock(tmp_path, 0.5):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    with project_lock(tmp_path, 0):  # no stale lock to clean up: the kernel released it
        assert json.loads((tmp_path / RUN_LOCK).read_text())["pid"] != holder.pid


def test_a_scheduled_run_that_meets_a_held_lock_fails_retryably(tmp_path, idx_dir):
    """The flow itself takes the lock (serve's runs start the flow, not the CLI): it fails, it does not crash."""
    root = copy_project(tmp_path / "project", {**tiny_params(idx_dir), "run": {"lock_timeout_s": 0.5}})
    with project_lock(root, 0):  # held by this process: the flow below runs in a subprocess, as serve's do
        done = subprocess.run([sys.executable, "-c", (
            "import sys; from flows import runtime; runtime.prepare(sys.argv[1])\n"
            "from flows.compress import compress\n"
            "state = compress(root=sys.argv[1], return_state=True)\n"
            "print(state.type.value, '|', state.message)"), str(root)], cwd=REPO, env=cli_env(),
            capture_output=True, text=True, timeout=300)
    state, _, message = done.stdout.strip().splitlines()[-1].partition(" | ")
    assert state == "FAILED", done.stdout[-2000:] + done.stderr[-2000:]
    assert "project run lock" in message and "still held after 0.5 s" in message
    assert not (root / "data" / "processed").exists()


def test_a_truncated_mlflow_store_is_refused_naming_the_file(tmp_path, idx_dir):
    root = copy_project(tmp_path / "project", tiny_params(idx_dir))
    tracking.use_store(root)
    tracking.aliases("fashion-student")  # creates mlflow.db
    db = root / "mlflow.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    with pytest.raises(CorruptDatabase, match=rf"{db} is not a healthy SQLite database .*model registry"):
        tracking.use_store(root)
    result = shrinkflow(root, "run")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert f"{db} is not a healthy SQLite database" in message and "Restore it from a backup" in message
    assert "sqlite3.DatabaseError" not in message


def test_a_corrupt_prefect_home_is_refused_naming_the_file(tmp_path, idx_dir):
    root = copy_project(tmp_path / "project", tiny_params(idx_dir))
    prefect_db = root / ".shrinkflow" / "prefect" / "prefect.db"
    prefect_db.parent.mkdir(parents=True)
    prefect_db.write_bytes(b"this is not a database" * 100)
    result = shrinkflow(root, "run")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert f"{prefect_db} is not a healthy SQLite database" in message and f"rm {prefect_db}" in message
