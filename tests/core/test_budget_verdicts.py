"""steps/core/budget.py and the budget's gates: each limit passed, over or inconclusive by its interval (issue 29)."""

from __future__ import annotations

import pytest

from steps.config import BudgetConfig
from steps.core import budget
from steps.promote.gates import budget_gates

MEASURED = {"precision": "fp32", "latency_p95_ms": 8.0, "latency_p95_low_ms": 7.0, "latency_p95_high_ms": 11.0,
            "speedup": 3.4, "speedup_low": 3.2, "speedup_high": 3.6, "windows": 5,
            "reference_window_p95_ms": [20.0, 34.0, 21.0, 20.5, 22.0],
            "size_kb": 90.0, "parameters": 5000, "macs": 10**6}


def test_an_interval_that_straddles_a_latency_limit_is_inconclusive_and_says_what_to_do():
    limits = BudgetConfig(latency_p95_ms=9.0, speedup=3.0, size_kb=100.0)
    assert budget.verdicts(MEASURED, limits) == {"latency_p95_ms": budget.INCONCLUSIVE, "speedup": budget.PASS,
                                                 "size_kb": budget.PASS}
    (sentence,) = budget.violations(MEASURED, limits)
    assert sentence.startswith("latency_p95_ms inconclusive: its 95% interval [7, 11] across 5 timing window(s) "
                               "straddles 9") and "target.speedup" in sentence
    # the search's walk judges by the estimate: 8 ms is within 9
    assert budget.verdicts(MEASURED, limits, upper=False)["latency_p95_ms"] == budget.PASS


def test_a_speedup_is_a_floor_judged_by_the_lower_end_of_its_interval():
    limits = BudgetConfig(speedup=4.0)
    assert budget.verdicts(MEASURED, limits) == {"speedup": budget.OVER}
    assert budget.violations(MEASURED, limits) == ["speedup 3.2 < 4 (lower end of its 95% interval)"]
    assert budget.excess(MEASURED, limits) == pytest.approx(4.0 / 3.2 - 1)
    # the search aims past a floor: 3.4 reaches 3.0 but not 3.0 plus a 20% margin
    assert budget.excess(MEASURED, BudgetConfig(speedup=3.0), margin=0.2, upper=False) == pytest.approx(3.6 / 3.4 - 1)
    assert "(3 plus the 20% margin)" in budget.violations(MEASURED, BudgetConfig(speedup=3.0), 0.2, upper=False)[0]


def test_the_gates_fail_an_inconclusive_latency_and_pass_a_relative_budget_naming_the_drift():
    checked = {"measured": MEASURED, "budget": {"latency_p95_ms": 9.0, "speedup": 3.0, "batch_size": 256}}
    gates = {g.name: g for g in budget_gates(checked)}
    latency, speedup = gates["target.latency_p95_ms"], gates["target.speedup"]
    assert not latency.passed and latency.value == 11.0 and "inconclusive" in latency.detail
    assert "95% CI [7, 11] across 5 timing windows" in latency.detail
    assert "when the search verified" not in latency.detail  # evaluate had no search to compare with
    moved = budget_gates({**checked, "measured": {**MEASURED, "machine_vs_search": 1.09}})[0]
    assert "the teacher's file read 1.09x the p95 it had when the search verified this model" in moved.detail
    assert speedup.passed and speedup.value == 3.2
    assert "3.4x faster than the teacher's file" in speedup.detail and "moved 1.70x" in speedup.detail
    over = budget_gates({"measured": {**MEASURED, "latency_p95_low_ms": 9.5}, "budget": {"latency_p95_ms": 9.0,
                                                                                          "batch_size": 256}})
    assert not over[0].passed and "inconclusive" not in over[0].detail
