from tests.benchmarks.quick import TINY_DATA, assert_timing, run_quick, written

CHANCE = 0.1  # ten classes


def test_budget_benchmark_runs_quick(idx_dir, tmp_path):
    # --batch 32, not 256: the search times every setting it visits at that batch (256 took half the test)
    result = run_quick("budget.py", "--data-path", str(idx_dir), "--fractions", "0.9", "--batch", "32",
                       "--out", str(tmp_path / "out"), *TINY_DATA)
    assert result.returncode == 0, result.stderr[-3000:]
    report = written(tmp_path / "out", "budget")
    assert report["teacher_accuracy"] > 2 * CHANCE
    # the teacher's deployable cost at batch 1 and at --batch, from which the budgets were set
    teacher = {int(batch): cost for batch, cost in report["teacher"].items()}
    assert set(teacher) == {1, 32} and all(c["latency_p95_ms"] > 0 and c["parameters"] > 0 for c in teacher.values())
    # hand-set: three uniform widths and the default student, each in fp32 and dynamic int8
    hand = report["hand_set_rows"]
    assert len(hand) == 4 * 2 and {r["precision"] for r in hand} == {"fp32", "dynamic"}
    assert all(0 <= r["accuracy"] <= 1 for r in hand) and sum(r["accuracy"] > CHANCE for r in hand) >= 4
    # one budget per --fractions at batch 1, and --batch-fraction's at --batch: fractions of the teacher's p95
    budgets = report["budgets"]
    assert [b["batch"] for b in budgets] == [1, 32]
    assert budgets[0]["budget_ms"] == 0.9 * teacher[1]["latency_p95_ms"]
    assert budgets[1]["budget_ms"] == 0.5 * teacher[32]["latency_p95_ms"]
    searched = {b["search"]["file"] for b in budgets if "file" in b["search"]}
    for b in budgets:
        assert b["drift"] > 0
        timed = b["side_by_side"]  # the teacher, every hand-set file and every searched one, timed in turns
        assert {r["file"] for r in hand} | searched <= set(timed) and len(timed) == 1 + len(hand) + len(searched)
        for timing in timed.values():
            assert_timing(timing)
            assert timing["p95_low"] <= timing["p95"] <= timing["p95_high"]  # 72 calls or more: an interval
        search = b["search"]
        if "unreachable" in search:  # whether a budget is met depends on this machine's timings, not asserted
            assert "target {" in search["unreachable"]  # the refusal names the budget it could not meet
            continue
        assert search["file"] in timed and search["precision"] in ("fp32", "dynamic", "static")
        assert 0 <= search["accuracy"] <= 1 and search["settings_measured"] >= 1
        if b["hand_set"] is not None:
            assert b["hand_set"] in hand and b["gap"]["low"] <= b["gap"]["points"] <= b["gap"]["high"]
