from tests.benchmarks.quick import ONE_TIMING, TINY_DATA, assert_timing, run_quick, written

CHANCE = 0.1  # ten classes


def test_deploy_benchmark_runs_quick(idx_dir, tmp_path):
    result = run_quick("deploy.py", "--data-path", str(idx_dir), "--out", str(tmp_path / "out"), *TINY_DATA,
                       *ONE_TIMING, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = written(tmp_path / "out", "deploy")
    rows = report["rows"]
    # the teacher and three compressed models, each eager and as ONNX fp32, dynamic and static int8
    assert set(rows) == {"teacher", "pruned", "structured", "student"}
    for name, row in rows.items():
        assert set(row["formats"]) == {"eager", "fp32", "dynamic", "static"}, name
        assert row["parameters"] > 0 and row["macs"] > 0, name
        for fmt, f in row["formats"].items():
            assert 0 <= f["accuracy"] <= 1 and f["file_bytes"] > 0, (name, fmt)
            for batch in ("batch_1", "batch_256"):
                assert_timing(f[batch], calls=1)
    teacher = rows["teacher"]
    assert teacher["formats"]["eager"]["accuracy"] > 2 * CHANCE
    assert rows["structured"]["macs"] < teacher["macs"] and rows["student"]["parameters"] < teacher["parameters"]
    # int8 files are smaller than fp32 ones (weights in a byte, not four)
    assert all(r["formats"]["dynamic"]["file_bytes"] < r["formats"]["fp32"]["file_bytes"] for r in rows.values())
    goals = report["goals"]
    assert goals["structured_mac_reduction"] == teacher["macs"] / rows["structured"]["macs"] > 1
    assert goals["structured_ort_speedup_b1"] > 0 and goals["student_speedup_vs_eager_teacher_b256"] > 0
    # the kernel profile names the kernel that makes dynamic int8 slow
    profile = report["op_times_ms_batch_256"]
    assert "ConvInteger" in profile["teacher/dynamic"] and "ConvInteger" not in profile["teacher/fp32"]
    assert all(ms >= 0 for ops in profile.values() for ms in ops.values())
