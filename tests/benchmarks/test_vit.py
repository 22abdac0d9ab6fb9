from tests.benchmarks.quick import ONE_TIMING, TINY_DATA, assert_timing, run_quick, written

CHANCE = 0.1  # ten classes


def test_transformers_benchmark_runs_quick(idx_dir, tmp_path):
    result = run_quick("vit.py", "--data-path", str(idx_dir), "--out", str(tmp_path / "out"), *TINY_DATA,
                       *ONE_TIMING)
    assert result.returncode == 0, result.stderr[-3000:]
    report = written(tmp_path / "out", "transformers")
    rows, goals = report["rows"], report["goals"]
    # the ViT teacher, three pruned ViTs, two students (one seed under --quick), the CNN teacher and its student
    pruned = set(goals["pruned"])
    assert len(pruned) == 3 and pruned < set(rows) and "teacher" in rows and "student from cnn" in rows
    assert len(rows) == 1 + 3 + 2 + 2
    timed = {name: row for name, row in rows.items() if row["formats"]}
    assert set(rows) - set(timed) == {"cnn teacher"}  # accuracy only
    for name, row in rows.items():
        assert 0 <= row["accuracy"] <= 1 and row["parameters"] > 0 and row["macs"] > 0, name
    for name, row in timed.items():
        assert set(row["formats"]) == {"eager", "fp32", "dynamic", "static"}, name
        for fmt, f in row["formats"].items():
            assert 0 <= f["accuracy"] <= 1, (name, fmt)
            for batch in ("batch_1", "batch_256"):
                assert_timing(f[batch], calls=1)
    # a few hundred images and one epoch leave the ViTs near chance; the CNN teacher learns them
    assert rows["cnn teacher"]["accuracy"] > 2 * CHANCE
    teacher = rows["teacher"]
    assert goals["teacher_accuracy"] == teacher["accuracy"]
    students = [name for name in rows if name.startswith("student")]
    assert len(students) == 3 and all(rows[name]["parameters"] < teacher["parameters"] for name in students)
    for name, p in goals["pruned"].items():
        assert rows[name]["macs"] < teacher["macs"] and p["mac_reduction"] == teacher["macs"] / rows[name]["macs"]
        assert p["loss_pt"] == (teacher["accuracy"] - rows[name]["accuracy"]) * 100, name
    assert goals["seeds"] == 1 and len(goals["distill_gains_pt"]) == 1
    assert all(len(accuracies) == 1 for accuracies in goals["student_accuracy"].values())
    # the teacher's kernel profile: static int8 runs quantized matrix products
    assert "QLinearMatMul" in report["op_times_ms_batch_256"]["teacher/static"]
