"""A killed or interrupted run leaves nothing half-written and resumes from the finished stages."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from benchmarks.checkout import copy_project
from steps.core.dag import STAGE_NAMES
from steps.core.layout import model_path
from steps.core.names import ModelRole
from tests.helpers import BIN, cli_env, require_fashion_mnist, shrinkflow, small_real_params, stage_states
from tests.reliability.registry_safety import assert_registry_safe, local_uri

pytestmark = pytest.mark.integration


def start_and_stop_after_teacher(root: Path, sig: int) -> tuple[subprocess.Popen, str]:
    """Start `shrinkflow run`; the moment the teacher stage reports finished, send `sig` to the run.
    Returns the finished process and everything it printed."""
    proc = subprocess.Popen([str(BIN / "shrinkflow"), "run", "--root", str(root)], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "Task run 'teacher' - Finished" in line:
            os.killpg(proc.pid, sig)  # the whole session: flow process and its Prefect server, like Ctrl-C
            break
    else:
        pytest.fail(f"the run ended before the teacher finished (exit {proc.wait()})")
    rest, _ = proc.communicate(timeout=60)
    return proc, "".join(seen) + rest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    params = small_real_params(require_fashion_mnist())
    params["prune"]["finetune"]["epochs"] = 2  # prune cannot finish before the signal lands
    return copy_project(tmp_path / "crash", params)


def test_sigkill_mid_pipeline_then_rerun_resumes(project: Path):
    proc, _ = start_and_stop_after_teacher(project, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert (project / model_path(ModelRole.TEACHER)).is_file()
    assert not (project / model_path(ModelRole.PRUNED)).exists()  # never a partial file under the real name
    rerun = shrinkflow(project, "run")
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    states = stage_states(rerun.stdout)
    assert [states[s] for s in ("data", "teacher")] == ["Cached", "Cached"]
    assert [states[s] for s in STAGE_NAMES[2:]] == ["Completed"] * (len(STAGE_NAMES) - 2)
    assert not list((project / "models").glob(".*.tmp"))
    assert assert_registry_safe(local_uri(project)) == 1


def test_ctrl_c_exits_cleanly_and_leaves_no_lock(project: Path):
    proc, output = start_and_stop_after_teacher(project, signal.SIGINT)
    assert proc.returncode == 130, output[-3000:]
    assert "interrupted (SIGINT)" in output
    # DVC's repo lock is free: a dvc command that needs it succeeds at once.
    status = subprocess.run([str(BIN / "dvc"), "commit", "--force", "teacher"], cwd=project, env=cli_env(),
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert not (project / model_path(ModelRole.PRUNED)).exists()
    assert assert_registry_safe(local_uri(project)) == 0
