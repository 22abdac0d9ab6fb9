from tests.benchmarks.quick import run_quick, written


def test_widths_benchmark_runs_quick(tmp_path):
    result = run_quick("widths.py", "--out", str(tmp_path / "out"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["name"]: r for r in written(tmp_path / "out", "widths")["rows"]}
    teacher = rows.pop("teacher")
    assert len(rows) == 6 and teacher["mac_reduction"] == 1
    # the rounded widths are the ones prune.round_to keeps: 25% of 32/64/128 and 256, multiples of 16
    assert (rows["25% of channels, round_to 16"]["channels"], rows["25% of channels, round_to 16"]["hidden"]) == (
        [16, 48, 96], [192])
    assert (rows["35% of channels, round_to 1"]["channels"], rows["35% of channels, round_to 1"]["hidden"]) == (
        [21, 42, 83], [166])
    for name, row in rows.items():
        assert 0 < row["macs"] < teacher["macs"] and row["mac_reduction"] == teacher["macs"] / row["macs"], name
        round_to = int(name.rsplit(" ", 1)[1])
        assert all(w % round_to == 0 for w in row["channels"] + row["hidden"]), name
    for row in (teacher, *rows.values()):
        assert row["eager_p50_ms"] > 0 and row["ort_p50_ms"] > 0, row["name"]
        assert row["ort_speedup_per_mac"] == row["ort_speedup"] / row["mac_reduction"], row["name"]
