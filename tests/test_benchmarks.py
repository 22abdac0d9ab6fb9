"""Benchmarks are scripts, not timed tests: here we only check that each one runs on tiny settings."""

import os
import subprocess
import sys

from tests.conftest import REPO


def test_compression_benchmark_runs_quick(idx_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "compression.py"), "--quick", "--raw-dir", str(idx_dir),
         "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},  # set in-process by MLflow
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 7  # header + teacher + six variants
    assert "Goals (issue #8" in result.stdout and "teacher >= 92.5%" in result.stdout
    assert "structured 50% channels" in result.stdout and "prune-then-distill" in result.stdout
    assert not list(tmp_path.iterdir())  # quick numbers are never written as results


def test_deploy_benchmark_runs_quick(idx_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "deploy.py"), "--quick", "--raw-dir", str(idx_dir),
         "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 4 * 4  # header + (teacher, pruned, structured, student) x (eager, fp32, dynamic, static)
    assert "structured pruning, ONNX Runtime fp32 at batch 1" in result.stdout
    assert "ConvInteger" in result.stdout  # the profile names the kernel that makes dynamic int8 slow
    assert not list(tmp_path.iterdir())
