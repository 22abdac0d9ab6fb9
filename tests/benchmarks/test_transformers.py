from tests.benchmarks.quick import ONE_TIMING, TINY_DATA, run_quick, table_rows, written


def test_transformers_benchmark_runs_quick(idx_dir, tmp_path):
    result = run_quick("transformers.py", "--data-path", str(idx_dir), "--out", str(tmp_path), *TINY_DATA, *ONE_TIMING)
    assert result.returncode == 0, result.stderr[-3000:]
    # header + (teacher, 3 pruned, 3 students) x (eager, fp32, dynamic, static)
    assert len(table_rows(result.stdout)) == 1 + 7 * 4
    for name in ("heads-pruned", "width-pruned", "depth-pruned", "attention + hidden vs logits-only"):
        assert f"- {name}" in result.stdout
    assert "| student from cnn | ORT static |" in result.stdout and "QLinearMatMul" in result.stdout
    written(tmp_path, "transformers")
