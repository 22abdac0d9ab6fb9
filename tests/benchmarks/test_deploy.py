from tests.benchmarks.quick import ONE_TIMING, TINY_DATA, run_quick, table_rows, written


def test_deploy_benchmark_runs_quick(idx_dir, tmp_path):
    result = run_quick("deploy.py", "--data-path", str(idx_dir), "--out", str(tmp_path), *TINY_DATA, *ONE_TIMING,
                       timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # header + (teacher, pruned, structured, student) x (eager, fp32, dynamic, static)
    assert len(table_rows(result.stdout)) == 1 + 4 * 4
    assert "structured pruning, ONNX Runtime fp32 at batch 1" in result.stdout
    assert "ConvInteger" in result.stdout  # the profile names the kernel that makes dynamic int8 slow
    written(tmp_path, "deploy")
