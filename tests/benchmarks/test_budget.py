from tests.benchmarks.quick import TINY_DATA, run_quick


def test_budget_benchmark_runs_quick(idx_dir, tmp_path):
    result = run_quick("budget.py", "--raw-dir", str(idx_dir), "--fractions", "0.9", "--out", str(tmp_path / "out"),
                       *TINY_DATA)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Goals (issue 18)" in result.stdout and "| hand-set" in result.stdout
    assert not (tmp_path / "out").exists()  # quick numbers are never written as results
