"""Intervals from timings taken in several windows: a two-stage (cluster) bootstrap over the windows.

Latency samples inside one timing window are close to independent, so the order-statistic interval of
quantiles.py describes that window well. Between windows the machine changes: another process wakes on a core
that an ONNX Runtime thread needs and every parallel section waits for it, and p95 moves by 2x (issue 29,
benchmarks/results/latency-stability-*). An interval that is to hold from one run to the next must come from
that between-window spread. Resampling whole windows with replacement, then the samples inside each chosen
window, and computing the statistic on the pooled resample (Davison & Hinkley 1997, section 3.8, strategy
"resample clusters, then within") gives an interval as wide as the windows disagree, and as narrow as one
window's noise when they agree.

With as few windows as a stage can afford (3 to 5), that percentile interval is too narrow: in a simulation
of windows whose speed varies independently it covered 61-69% where it claims 95% (review of issue 29). It is
therefore widened as Hesterberg's *expanded percentile interval* does ("What Teachers Should Know About the
Bootstrap", The American Statistician 69(4), 2015): each side's distance from the estimate times
t(W-1) / z x sqrt(W / (W-1)), 1.58 at 5 windows; the same simulation then covered 79-85%. It is still a
95% interval in name more than in fact when windows are few, which the docs say; more windows narrow it.

The statistic sees one array per timed file (the windows are paired: a reference timed in the same turns),
so a ratio of two files' medians gets its interval the same way. The seed is fixed: the same timings give
the same interval (the audit recomputes it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import math

import numpy as np
from scipy import stats as sps

from steps.core.stats.base import Interval, check_probability

RESAMPLES = 1000
SEED = 0

Statistic = Callable[..., float]
"""f(pooled samples of file 1, pooled samples of file 2, ...) -> float."""


def pooled(windows: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Each file's samples of every window, concatenated: [file 1's, file 2's, ...]."""
    files = len(windows[0])
    return [np.concatenate([np.asarray(w[f], dtype=float) for w in windows]) for f in range(files)]


def window_interval(windows: Sequence[Sequence[np.ndarray]], statistic: Statistic, confidence: float = 0.95,
                    resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """`statistic` of the pooled samples, with a percentile interval from the two-stage bootstrap.

    `windows[w][f]`: the samples of file f in window w (every window times every file). Needs two or more
    windows: from one, nothing says how far the next would differ.
    """
    check_probability("confidence", confidence)
    if len(windows) < 2:
        raise ValueError(f"an interval across windows needs at least 2 windows, got {len(windows)}")
    if len({len(w) for w in windows}) != 1 or any(np.asarray(s).size == 0 for w in windows for s in w):
        raise ValueError("every window must hold a non-empty sample array for every file")
    rng = np.random.default_rng(seed)
    estimates = np.empty(resamples)
    for b in range(resamples):
        chosen = rng.integers(0, len(windows), len(windows))
        resampled = [[rng.choice(np.asarray(s, dtype=float), len(s)) for s in windows[w]] for w in chosen]
        estimates[b] = statistic(*pooled(resampled))
    tail = (1 - confidence) / 2
    low, high = np.quantile(estimates, [tail, 1 - tail])
    estimate = float(statistic(*pooled(windows)))
    return Interval(estimate, *expanded(estimate, float(low), float(high), len(windows), confidence), confidence)


def expansion(windows: int, confidence: float = 0.95) -> float:
    """How much wider the expanded percentile interval is than the plain one from `windows` windows."""
    z = sps.norm.ppf(1 - (1 - confidence) / 2)
    return float(sps.t.ppf(1 - (1 - confidence) / 2, windows - 1) / z * math.sqrt(windows / (windows - 1)))


def expanded(estimate: float, low: float, high: float, windows: int, confidence: float = 0.95) -> tuple[float, float]:
    """A percentile interval [low, high] around `estimate` from `windows` windows, each side widened by
    expansion(windows)."""
    factor = expansion(windows, confidence)
    return estimate - factor * (estimate - low), estimate + factor * (high - estimate)


def p95(samples: np.ndarray) -> float:
    return float(np.quantile(samples, 0.95))


def median_ratio(reference: np.ndarray, candidate: np.ndarray) -> float:
    """How many times faster the candidate is than the reference: the ratio of their medians."""
    return float(np.median(reference) / np.median(candidate))
