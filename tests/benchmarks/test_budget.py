from tests.benchmarks.quick import TINY_DATA, run_quick, written


def test_budget_benchmark_runs_quick(idx_dir, tmp_path):
    # --batch 32, not 256: the search times every setting it visits at that batch (256 took half the test)
    result = run_quick("budget.py", "--data-path", str(idx_dir), "--fractions", "0.9", "--batch", "32",
                       "--out", str(tmp_path / "out"), *TINY_DATA)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Goals (issue 18)" in result.stdout and "| hand-set" in result.stdout
    written(tmp_path / "out", "budget")
