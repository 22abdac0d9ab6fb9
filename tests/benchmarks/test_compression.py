from tests.benchmarks.quick import ONE_TIMING, TINY_DATA, assert_timing, run_quick, written

CHANCE = 0.1  # ten classes


def test_compression_benchmark_runs_quick(idx_dir, tmp_path):
    def run(out):
        return run_quick("compression.py", "--data-path", str(idx_dir), "--out", str(out), "--seeds", "2",
                         "--jobs", "2", "--work", str(tmp_path / "work"), *TINY_DATA, *ONE_TIMING, timeout=600)

    result = run(tmp_path / "first")
    assert result.returncode == 0, result.stderr[-3000:]
    report = written(tmp_path / "first", "compression")
    rows, per_seed = report["rows"], report["per_seed"]
    # the teacher and six variants, each measured on both seeds (two teachers)
    assert rows[0]["name"] == "teacher" and len({r["name"] for r in rows}) == 7
    assert len(per_seed) == 2 and all([r["name"] for r in seed] == [r["name"] for r in rows] for seed in per_seed)
    teacher, variants = rows[0], rows[1:]
    assert teacher["accuracy"] > 2 * CHANCE and teacher["losses_pt"] == [0, 0] and teacher["mac_reduction"] == 1
    for row in rows:
        assert all(0 <= a <= 1 for a in row["accuracies"]) and len(row["accuracies"]) == 2, row["name"]
        assert 0 < row["nonzeros"] <= row["parameters"] and row["macs"] > 0, row["name"]
        assert 0 < row["compressed_bytes"] and 0 < row["file_bytes"] and row["latency_p50_ms"] > 0, row["name"]
        assert row["eager_speedup"] > 0 and row["onnxruntime_speedup"] > 0, row["name"]
        # the loss is the teacher's accuracy minus the model's, per seed, in points
        assert row["losses_pt"] == [(t - a) * 100 for t, a in zip(teacher["accuracies"], row["accuracies"])]
    # every variant is compressed: zeroed weights (unstructured), fewer channels or a smaller student
    assert all(r["nonzeros"] < teacher["nonzeros"] for r in variants)
    assert any(r["nonzeros"] < 0.2 * r["parameters"] for r in variants)  # the unstructured one, 91% zeros
    assert any(r["parameters"] < teacher["parameters"] and r["mac_reduction"] > 1.5 for r in variants)
    assert sum(r["accuracy"] > CHANCE for r in variants) >= 4
    for seed in per_seed:
        for row in seed:
            for backend, by_batch in row["latency"].items():
                assert by_batch, (row["name"], backend)
                for timing in by_batch.values():
                    assert_timing(timing, calls=1)  # ONE_TIMING: one timed call

    # --work keeps the models; a second run reuses them all (same accuracies, nothing retrained)
    teacher_file = tmp_path / "work" / "seed0" / "base" / "models" / "teacher.safetensors"
    trained = teacher_file.stat().st_mtime_ns
    again = run(tmp_path / "again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert teacher_file.stat().st_mtime_ns == trained
    reused = written(tmp_path / "again", "compression")["rows"]
    assert [r["accuracies"] for r in reused] == [r["accuracies"] for r in rows]
