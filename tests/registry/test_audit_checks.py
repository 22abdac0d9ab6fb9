"""The audit's latency re-check on given numbers (no timing): p95 judged by its confidence intervals, p50 and a p95
without intervals by the relative tolerance (`shrinkflow audit --latency-tolerance`)."""

from __future__ import annotations

from steps.registry.audit.remeasure import LATENCY_TOLERANCE, latency_check

BACKEND = "the registered ONNX file in ONNX Runtime"


def logged(p95: float, low: float | None, high: float | None, p50: float = 1.0) -> dict[str, float]:
    """The evaluate run's metrics as MLflow holds them: an interval without enough samples is not logged."""
    out = {"student.latency_p50_ms": p50, "student.latency_p95_ms": p95}
    if low is not None:
        out |= {"student.latency_p95_low_ms": low, "student.latency_p95_high_ms": high}
    return out


def measured(p95: float, low: float | None, high: float | None, p50: float = 1.0) -> dict:
    """measurement.measure_models' row: the interval is None with too few samples."""
    return {"latency_p50_ms": p50, "latency_p95_ms": p95, "latency_p95_low_ms": low, "latency_p95_high_ms": high}


def p95_check(before: dict, now: dict, tolerance: float = LATENCY_TOLERANCE):
    return latency_check("latency_p95_ms", before, now, tolerance, BACKEND)


def test_overlapping_intervals_pass_however_far_the_estimates_are_apart():
    # p95 3.0 -> 9.0 ms is 200% slower, past any tolerance given; the intervals still overlap
    check = p95_check(logged(3.0, 2.0, 8.0), measured(9.0, 7.5, 12.0), tolerance=0.0)
    assert check.passed and check.name == "metric latency_p95_ms"
    assert "recorded [2, 8] ms, re-measured [7.5, 12] ms; they overlap" in check.detail
    assert "95% intervals of p95" in check.detail and f"timed on {BACKEND}" in check.detail
    assert check.recorded == "3 [2, 8]" and check.observed == "9 [7.5, 12]"


def test_a_re_measured_interval_starting_at_the_recorded_end_still_passes():
    assert p95_check(logged(3.0, 2.0, 4.0), measured(5.0, 4.0, 6.0), tolerance=0.0).passed


def test_faster_now_passes_and_says_so():
    check = p95_check(logged(10.0, 9.0, 12.0), measured(2.0, 1.5, 2.5), tolerance=0.0)
    assert check.passed
    assert "recorded [9, 12] ms, re-measured [1.5, 2.5] ms; faster now" in check.detail


def test_a_re_measured_interval_above_the_recorded_one_fails_naming_both():
    # 4.2 ms is within the default 100% of 3.0 ms: the intervals, not the tolerance, decide
    check = p95_check(logged(3.0, 2.9, 3.1), measured(4.2, 4.0, 4.5), tolerance=1e6)
    assert check.passed is False
    assert "recorded [2.9, 3.1] ms, re-measured [4, 4.5] ms; slower now" in check.detail
    assert "starts above the recorded one's end" in check.detail


def test_without_intervals_p95_falls_back_on_the_tolerance_and_says_why():
    within = p95_check(logged(3.0, None, None), measured(5.0, None, None), tolerance=1.0)
    assert within.passed
    assert "no 95% interval of p95 recorded and re-measured (it needs 72 latency samples)" in within.detail
    assert "within 100%" in within.detail and f"timed on {BACKEND}" in within.detail
    outside = p95_check(logged(3.0, None, None), measured(7.0, None, None), tolerance=1.0)
    assert outside.passed is False and outside.recorded == "3" and outside.observed == "7"
    # an interval on one side only is not compared with a point: the tolerance decides, naming the missing side
    one_sided = p95_check(logged(3.0, None, None), measured(7.0, 6.0, 8.0), tolerance=2.0)
    assert one_sided.passed and "no 95% interval of p95 recorded (" in one_sided.detail


def test_p50_has_no_interval_and_keeps_the_tolerance():
    before, now = logged(3.0, 2.0, 8.0, p50=1.0), measured(3.0, 2.0, 8.0, p50=2.5)
    assert latency_check("latency_p50_ms", before, now, 2.0, BACKEND).passed
    strict = latency_check("latency_p50_ms", before, now, 1.0, BACKEND)
    assert strict.passed is False and strict.detail == f"within 100%, timed on {BACKEND} as the evaluate run was"


def test_the_intervals_are_read_under_the_names_the_evaluate_stage_logs(project_after, stage_params, one_thread):
    """The real producers: measure_models times with enough repeats for intervals, the evaluate stage's
    flattening names them as MLflow holds them; a measurement compared with its own record passes on them."""
    from steps.core.datasets import load_splits
    from steps.core.layout import onnx_path
    from steps.core.measurement import measure_models
    from steps.core.names import ModelRole
    from steps.evaluate import numeric_leaves
    from tests.helpers import variant

    root = project_after("export")
    cfg = variant(stage_params, evaluate={"latency_repeats": 72, "latency_warmup": 0}).evaluate
    test = load_splits(root, ("test",))["test"]
    row = measure_models({"student": (root, ModelRole.STUDENT)}, test, cfg, 1,
                         {"student": root / onnx_path(ModelRole.STUDENT)})["student"]
    record = numeric_leaves({"student": row})
    check = p95_check(record, row, tolerance=0.0)
    low, high = record["student.latency_p95_low_ms"], record["student.latency_p95_high_ms"]
    assert check.passed and f"recorded [{low:.4g}, {high:.4g}] ms, re-measured [{low:.4g}, {high:.4g}] ms" in check.detail
