"""steps/core/stats/windows.py: intervals across timing windows (issue 29)."""

from __future__ import annotations

import numpy as np
import pytest

from steps.core.stats.windows import expanded, expansion, median_ratio, p95, window_interval


def windows_of(levels: list[float], seed: int = 0, n: int = 150) -> list[tuple[np.ndarray]]:
    """One window per level: latencies around that level (ms), as a window on a calm or a busy machine gives."""
    rng = np.random.default_rng(seed)
    return [(level * rng.gamma(50.0, 1 / 50.0, n),) for level in levels]


def test_windows_that_disagree_widen_the_interval_that_one_window_would_keep_narrow():
    calm = window_interval(windows_of([4.0] * 5), p95)
    drifting = window_interval(windows_of([4.0, 4.0, 8.0, 4.0, 6.0]), p95)
    assert calm.low <= calm.estimate <= calm.high and calm.high / calm.low < 1.15
    assert drifting.low <= drifting.estimate <= drifting.high
    assert drifting.high / drifting.low > 1.5  # the 2x slower window is in the interval, not averaged away
    assert drifting.high > 7.0


def test_the_same_timings_give_the_same_interval():
    data = windows_of([4.0, 5.0, 6.0], seed=3)
    assert window_interval(data, p95) == window_interval(data, p95)


def test_a_ratio_timed_in_the_same_windows_is_not_moved_by_drift_that_moves_both_files():
    rng = np.random.default_rng(1)
    slowdowns = [1.0, 2.0, 1.0, 1.6, 1.0]  # the machine, window by window: it slows every file alike
    paired = [(3.0 * s * rng.gamma(80.0, 1 / 80.0, 150), s * rng.gamma(80.0, 1 / 80.0, 150)) for s in slowdowns]
    speedup = window_interval(paired, median_ratio)
    latency = window_interval([(candidate,) for _, candidate in paired], p95)
    assert speedup.low <= 3.0 <= speedup.high and speedup.high / speedup.low < 1.2
    assert latency.high / latency.low > 1.5


def test_one_window_cannot_say_how_far_the_next_would_differ():
    with pytest.raises(ValueError, match="at least 2 windows, got 1"):
        window_interval(windows_of([4.0]), p95)
    with pytest.raises(ValueError, match="non-empty sample array for every file"):
        window_interval([(np.ones(5),), (np.array([]),)], p95)


def test_few_windows_widen_the_percentile_interval_as_the_expanded_percentile_interval_does():
    assert expansion(5) == pytest.approx(2.776 / 1.960 * (5 / 4) ** 0.5, rel=1e-3)  # t(4) / z x sqrt(5/4)
    assert expansion(3) > expansion(5) > expansion(20) > 1.0
    assert expanded(10.0, 9.0, 12.0, 5) == pytest.approx((10.0 - expansion(5), 10.0 + 2 * expansion(5)))


def test_the_interval_covers_a_drifting_machines_p95_most_of_the_time():
    """Windows whose speed drifts independently (15% lognormal): the interval from 5 of them should cover the
    long-run p95; the plain percentile interval covered about two runs in three here, the expanded one more."""
    rng = np.random.default_rng(7)
    shape, drift = 40.0, 0.15
    long_run = np.quantile(rng.lognormal(0, drift, 400_000) * rng.gamma(shape, 1 / shape, 400_000), 0.95)
    covered = 0
    for _ in range(60):
        windows = [(rng.lognormal(0, drift) * rng.gamma(shape, 1 / shape, 80),) for _ in range(5)]
        found = window_interval(windows, p95, resamples=200)
        covered += found.low <= long_run <= found.high
    assert covered >= 45  # 75%
