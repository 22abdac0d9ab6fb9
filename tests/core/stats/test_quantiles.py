"""steps/core/stats/quantiles.py: ranks against an explicit binomial and a textbook, coverage on
constructed populations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steps.core.stats import quantiles as stats
from steps.core.stats.base import Interval


def binom_pmf(n: int, q: float) -> list[float]:
    return [math.comb(n, k) * q**k * (1 - q) ** (n - k) for k in range(n + 1)]


# --- quantile intervals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "q", "confidence"), [(100, 0.5, 0.95), (200, 0.95, 0.95), (72, 0.95, 0.95),
                                                    (500, 0.99, 0.9), (30, 0.2, 0.8)])
def test_quantile_ranks_against_an_explicit_binomial(n, q, confidence):
    low, high = stats.quantile_ranks(n, q, confidence)
    pmf, tail = binom_pmf(n, q), (1 - confidence) / 2
    below, above = sum(pmf[:low]), sum(pmf[high:])  # P(B < l), P(B >= u)
    assert 1 <= low < high <= n
    assert below <= tail and above <= tail
    assert sum(pmf[low:high]) >= confidence  # P(l <= B < u)
    # Tightest equal-tailed choice: one rank further in breaks a tail (unless it is already at the edge).
    assert below + pmf[low] > tail
    assert high == n or above + pmf[high - 1] > tail


def test_median_ranks_for_100_samples_match_the_textbook():
    assert stats.quantile_ranks(100, 0.5, 0.95) == (40, 61)  # Conover, Practical Nonparametric Statistics


def test_quantile_ci_returns_the_order_statistics():
    samples = np.random.default_rng(3).permutation(np.arange(1.0, 201.0))  # X_(k) = k
    interval = stats.quantile_ci(samples, q=0.95, confidence=0.95)
    low, high = stats.quantile_ranks(200, 0.95, 0.95)
    assert (interval.low, interval.high) == (low, high)
    assert interval.estimate == np.quantile(samples, 0.95)
    assert interval.low <= interval.estimate <= interval.high


def test_quantile_ci_covers_the_true_quantile_at_its_computed_rate():
    n, q, confidence, trials = 100, 0.9, 0.9, 2000
    true_quantile = -math.log(1 - q)  # of Exp(1)
    ordered = np.sort(np.random.default_rng(5).exponential(size=(trials, n)), axis=1)
    low, high = stats.quantile_ranks(n, q, confidence)
    covered = np.mean((ordered[:, low - 1] <= true_quantile) & (true_quantile < ordered[:, high - 1]))
    exact = sum(binom_pmf(n, q)[low:high])
    assert exact >= confidence
    assert covered == pytest.approx(exact, abs=0.03)


@pytest.mark.parametrize(("q", "need"), [(0.95, 72), (0.5, 6), (0.05, 72)])
def test_quantile_ci_too_few_samples_says_how_many(q, need):
    assert stats.min_samples_for_quantile(q, 0.95) == need
    assert stats.quantile_ranks(need, q, 0.95)[1] <= need
    with pytest.raises(ValueError, match=f"at least {need} samples, got {need - 1}"):
        stats.quantile_ci(np.arange(float(need - 1)), q=q, confidence=0.95)


def test_quantile_ci_with_the_minimum_samples_spans_the_extremes():
    assert stats.quantile_ci(np.array([5.0, 1.0, 3.0, 2.0, 6.0, 4.0]), q=0.5) == Interval(3.5, 1.0, 6.0, 0.95)


@pytest.mark.parametrize("samples", [np.array([1.0, np.nan] * 50), np.ones((10, 10)), np.array([], dtype=float)])
def test_quantile_ci_rejects_bad_samples(samples):
    with pytest.raises(ValueError, match="samples"):
        stats.quantile_ci(samples)
