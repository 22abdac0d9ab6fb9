import os

from tests.benchmarks.quick import run_quick, written
from tests.helpers import SHARED_PREFECT_ENV


def test_overhead_benchmark_runs_quick(idx_dir, tmp_path):
    # the session's Prefect server, when there is one, for the no-change run with a server (one fewer to start)
    shared = ("--prefect-api", os.environ[SHARED_PREFECT_ENV]) if os.environ.get(SHARED_PREFECT_ENV) else ()
    result = run_quick("overhead.py", "--data-path", str(idx_dir), "--out", str(tmp_path), *shared,
                       drop=("PREFECT_HOME", SHARED_PREFECT_ENV))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| `shrinkflow run`, clean checkout |" in result.stdout and "| Prefect server start |" in result.stdout
    # the no-change rerun hits every stage's cache; one changed distill param reruns distill and what follows
    assert "Rerun, nothing changed: data=Cached, teacher=Cached" in result.stdout
    assert "Stages that ran after the change: distill, export, quantize, evaluate, promote." in result.stdout
    assert "| `shrinkflow run` as typed, nothing changed (local profile): mean of 1" in result.stdout
    assert "| the same with a Prefect server running (PREFECT_API_URL): mean of 1" in result.stdout
    written(tmp_path, "overhead")
