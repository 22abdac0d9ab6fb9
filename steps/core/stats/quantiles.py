"""Distribution-free confidence intervals of a quantile (latency p95) from i.i.d. samples: order statistics."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from steps.core.stats.base import Interval, check_probability


def min_samples_for_quantile(q: float, confidence: float) -> int:
    """The fewest i.i.d. samples for which quantile_ranks exists: max(q, 1-q)^n <= (1 - confidence) / 2.

    Below it even [min, max] misses the q-quantile with probability above
    (1 - confidence) / 2 on one side. For p95 at 95% confidence that is 72.
    """
    check_probability("q", q)
    check_probability("confidence", confidence)
    tail, p = (1.0 - confidence) / 2, max(q, 1.0 - q)
    n = max(1, math.ceil(math.log(tail) / math.log(p)))
    while p**n > tail:  # the logs can round either way at the boundary
        n += 1
    while n > 1 and p ** (n - 1) <= tail:
        n -= 1
    return n


def quantile_ranks(n: int, q: float, confidence: float) -> tuple[int, int]:
    """1-based ranks (l, u) such that [X_(l), X_(u)] covers the q-quantile with probability >= confidence.

    X_(l) <= x_q < X_(u) exactly when l <= B < u, with B = #{X_i <= x_q} ~ Binomial(n, q)
    for continuous data (at least that for ties). The interval is equal-tailed:
    l is the largest rank with P(B < l) <= alpha/2 and u the smallest with
    P(B >= u) <= alpha/2, so each end is also a one-sided bound at confidence 1 - alpha/2.
    """
    need = min_samples_for_quantile(q, confidence)
    if not isinstance(n, int | np.integer) or n < need:
        raise ValueError(f"a {confidence:.0%} interval of the {q:g} quantile needs at least {need} samples, got {n}")
    tail = (1.0 - confidence) / 2
    k = np.arange(n + 1)
    cdf = sps.binom.cdf(k, n, q)  # P(B <= k)
    sf = sps.binom.sf(k, n, q)  # P(B > k); from the upper tail directly, 1 - cdf loses it to rounding
    lower = int(np.searchsorted(cdf, tail, side="right"))  # count of k with P(B <= k) <= tail: P(B < l) <= tail
    upper = int(np.searchsorted(-sf, -tail, side="left")) + 1  # first k with P(B > k) <= tail, as u = k + 1
    return max(1, lower), min(n, upper)  # the clamps only absorb last-ulp differences from the n check above


def quantile_ci(samples: np.ndarray, q: float = 0.95, confidence: float = 0.95) -> Interval:
    """Distribution-free interval of the q-quantile (e.g. latency p95) from i.i.d. samples.

    The estimate is np.quantile (linear interpolation); the bounds are order
    statistics chosen by quantile_ranks. Raises ValueError naming the number of
    samples needed when there are too few.
    """
    x = np.asarray(samples)
    real = np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)
    if x.ndim != 1 or x.size == 0 or not real:
        raise ValueError(f"samples must be a non-empty 1-D array of real numbers, got shape {x.shape} dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite (a NaN or inf latency is a measurement bug)")
    low, high = quantile_ranks(len(x), q, confidence)
    ordered = np.sort(x)
    return Interval(float(np.quantile(x, q)), float(ordered[low - 1]), float(ordered[high - 1]), confidence)
