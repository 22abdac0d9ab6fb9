import os

import pytest

from steps.core.dag import STAGE_NAMES
from tests.benchmarks.quick import run_quick, written
from tests.helpers import SHARED_PREFECT_ENV


def test_overhead_benchmark_runs_quick(idx_dir, tmp_path):
    # the session's Prefect server, when there is one, for the no-change run with a server (one fewer to start)
    shared = ("--prefect-api", os.environ[SHARED_PREFECT_ENV]) if os.environ.get(SHARED_PREFECT_ENV) else ()
    result = run_quick("overhead.py", "--data-path", str(idx_dir), "--out", str(tmp_path / "out"), *shared,
                       drop=("PREFECT_HOME", SHARED_PREFECT_ENV))
    assert result.returncode == 0, result.stderr[-3000:]
    report = written(tmp_path / "out", "overhead")
    first, rerun, changed = report["first"], report["rerun"], report["changed"]
    stages = list(STAGE_NAMES)
    assert first["states"] == dict.fromkeys(stages, "Completed")
    # the no-change rerun hits every stage's cache; one changed distill param reruns distill and what follows
    assert rerun["states"] == dict.fromkeys(stages, "Cached")
    assert [s for s, state in changed["states"].items() if state != "Cached"] == stages[stages.index("distill"):]
    # every measurement took time; the first flow run's is split into parts that add up to it
    for run in (report["plain"], first, rerun, changed):
        assert run["wall_s"] > 0 and run["total_in_process"] > 0
    parts = report["breakdown"]
    assert parts["steps (compute)"] > 0 and sum(parts.values()) == pytest.approx(first["wall_s"])
    assert 0 < report["cold_start_s"] < first["wall_s"]
    for key in ("no_change_command", "no_change_with_prefect_server"):  # --quick: one run each
        t = report[key]
        assert t["runs"] == 1 and 0 < t["min_s"] <= t["mean_s"] <= t["max_s"], key
