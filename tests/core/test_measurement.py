"""steps/core/measurement.py: the p95 interval every latency carries (issue 18)."""

from __future__ import annotations

import numpy as np

from steps.core.measurement import with_p95_interval


def test_p95_interval_appears_from_72_samples_and_covers_the_estimate():
    rng = np.random.default_rng(0)
    samples = list(rng.gamma(4.0, 0.25, 120))
    timed = with_p95_interval({"p50": 1.0, "p95": float(np.quantile(samples, 0.95)), "max": max(samples),
                               "n": 120, "samples": samples})
    assert "samples" not in timed and timed["p95_low"] <= timed["p95"] <= timed["p95_high"] < timed["max"]
    few = with_p95_interval({"p50": 1.0, "p95": 2.0, "max": 2.5, "n": 71, "samples": samples[:71]})
    assert few["p95_low"] is None and few["p95_high"] is None


def test_only_the_cpus_clocks_are_comparable_across_runs():
    """The audit re-times on the CPU and promote's 'faster' compares promote runs: a GPU's latency is neither."""
    from steps.core.measurement import timed_on_cpu

    assert timed_on_cpu(None) and timed_on_cpu("perf_counter")
    assert timed_on_cpu("CPUExecutionProvider") and timed_on_cpu("CPUExecutionProvider (onnxruntime-gpu not installed)")
    assert not timed_on_cpu("cuda_events") and not timed_on_cpu("CUDAExecutionProvider")
