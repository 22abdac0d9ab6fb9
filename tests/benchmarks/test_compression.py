from tests.benchmarks.quick import ONE_TIMING, TINY_DATA, run_quick, table_rows, written


def test_compression_benchmark_runs_quick(idx_dir, tmp_path):
    def run():
        return run_quick("compression.py", "--data-path", str(idx_dir), "--out", str(tmp_path / "out"), "--seeds", "2",
                         "--jobs", "2", "--work", str(tmp_path / "work"), *TINY_DATA, *ONE_TIMING, timeout=600)

    result = run()
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(table_rows(result.stdout)) == 1 + 7  # header + teacher + six variants
    assert "Goals (issue #8, means over 2 seed(s)" in result.stdout and "teacher >= 92.5%" in result.stdout
    assert "multiples of 16" in result.stdout and "prune-then-distill" in result.stdout
    # two seeds, two teachers: each goal lists its per-seed losses
    assert "unstructured >= 90% sparsity" in result.stdout and "(per seed " in result.stdout
    written(tmp_path / "out", "compression")

    # --work keeps the models; a second run reuses them all (same accuracies, nothing retrained)
    teacher = (tmp_path / "work" / "seed0" / "base" / "models" / "teacher.safetensors").stat().st_mtime_ns
    again = run()
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "work" / "seed0" / "base" / "models" / "teacher.safetensors").stat().st_mtime_ns == teacher
    accuracy = lambda text: [ln.split("|")[1:3] for ln in text.splitlines() if ln.startswith("| ")]  # noqa: E731
    assert accuracy(again.stdout) == accuracy(result.stdout)
