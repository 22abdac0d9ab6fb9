"""A deployable's latency as the budget and the gates judge it: timed in windows, side by side with a reference.

Why (issue 29, measured here; docs/budget.md): ONNX Runtime timed with as many intra-op threads as the
machine has cores waits, in every parallel section, for whichever of its threads another process has just
taken the core from. On the 2-core machine a background loop using 10% of one core moved a student's
batch-256 p95 from 4.3 to 13-14 ms at 2 threads (at 1 thread: 8.0 to 8.5-9.0 ms); "idle" machines run
servers and monitors that wake now and then, so p95 at all cores moves by up to 2x from one window of a
few seconds to the next, while each window's own interval is narrow. A verdict from one window flips with
the window. Two things hold instead:

- **The reference, timed in the same turns** (the unpruned teacher's ONNX file): whatever slows the
  machine slows both, and the ratio of their medians (the speedup) moved by 6% between windows where p95
  moved by 2.8x. A budget relative to the reference (`target.speedup`) cannot be flipped by drift.
- **Several windows**: each file's p95 pooled over `Timing.windows` windows, with an interval from a
  bootstrap over the windows (steps/core/stats/windows.py) that is as wide as the windows disagree. A
  limit is met when the whole interval is within it, missed when the whole interval is past it, and
  otherwise the verdict is *inconclusive*: refused, but said to be the machine's noise, not the model.

The budget search's verification, evaluate's re-measurement and the audit all time through `time_files` and
judge through `verdict`, so the search's "fits" is the gate's "pass".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps.core.stats import quantiles, windows as across
from steps.core.stats.base import Interval

PASS, OVER, INCONCLUSIVE = "pass", "over", "inconclusive"
CONFIDENCE = 0.95

REFERENCE = "reference"
"""The name the reference file is timed under."""


@dataclass(frozen=True)
class Timing:
    """How a cost is timed: batch, threads, warm-up, and in each of `windows` windows the files interleaved, at
    least `repeats` calls each and for at least `seconds`."""

    batch_size: int
    threads: int
    warmup: int
    repeats: int
    seconds: float = 0.0
    windows: int = 1
    provider: str = "CPUExecutionProvider"
    """ONNX Runtime's execution provider (accelerator.onnx_provider)."""


def time_files(files: dict[str, Path], batch, timing: Timing) -> dict[str, list[list[float]]]:
    """{name: [[ms of each call] per window]}: the ONNX files (ONNX Runtime, `timing.threads` threads) run on
    `batch` (an array, or a text's token arrays by name: onnx_export.feed) in turns (steps/compression/measure.py
    interleaved_samples), window after window. Warm-up once: the sessions stay loaded between windows."""
    from steps.compression import measure

    runners = measure.onnx_runners(files, batch, timing.threads, timing.provider)
    out: dict[str, list[list[float]]] = {name: [] for name in files}
    for w in range(timing.windows):
        timed = measure.interleaved_samples(runners, timing.warmup if w == 0 else 0, timing.repeats, timing.seconds)
        for name, samples in timed.items():
            out[name].append(samples)
    return out


def reading(timed: dict[str, list[list[float]]], name: str, reference: str | None = None) -> dict:
    """What the timings say of `name`: p95 and p50 in ms, p95's 95% interval (from the windows when there are
    several, else from the one window's samples), each window's p95; with a `reference` timed in the same
    windows, the speedup (reference median / this median) with its interval, and the reference's p95s.

    Keys: latency_p95_ms, latency_p95_low_ms, latency_p95_high_ms, latency_p50_ms, windows, window_p95_ms;
    speedup, speedup_low, speedup_high, reference_p95_ms, reference_window_p95_ms (with a reference).
    """
    mine = [np.asarray(w, dtype=float) for w in timed[name]]
    low, p95, high = _p95_interval(mine)
    out = {"latency_p95_ms": p95, "latency_p95_low_ms": low, "latency_p95_high_ms": high,
           "latency_p50_ms": float(np.median(np.concatenate(mine))), "windows": len(mine),
           "window_p95_ms": [across.p95(w) for w in mine]}
    if reference is None:
        return out
    theirs = [np.asarray(w, dtype=float) for w in timed[reference]]
    pairs = list(zip(theirs, mine, strict=True))
    speedup = (across.window_interval(pairs, across.median_ratio, CONFIDENCE) if len(pairs) > 1 else
               Interval(*[across.median_ratio(*pairs[0])] * 3, CONFIDENCE))  # one window: no interval
    return out | {"speedup": speedup.estimate, "speedup_low": speedup.low, "speedup_high": speedup.high,
                  "reference_p95_ms": across.p95(np.concatenate(theirs)),
                  "reference_window_p95_ms": [across.p95(w) for w in theirs]}


def _p95_interval(windows: list[np.ndarray]) -> tuple[float | None, float, float | None]:
    """(low, p95, high): across windows when there are several, from one window's order statistics when there is
    one; no interval (None ends) from fewer calls in all than one window needs for it (72 for 95%)."""
    if sum(map(len, windows)) < quantiles.min_samples_for_quantile(0.95, CONFIDENCE):
        return None, across.p95(np.concatenate(windows)), None
    if len(windows) > 1:
        found = across.window_interval([(w,) for w in windows], across.p95, CONFIDENCE)
        return found.low, found.estimate, found.high
    (only,) = windows
    found = quantiles.quantile_ci(only, 0.95, CONFIDENCE)
    return found.low, found.estimate, found.high


def verdict(low: float, high: float, limit: float, at_least: bool = False) -> str:
    """PASS when the whole interval [low, high] is within `limit` (at most it; or at least it, `at_least`),
    OVER when the whole interval is past it, else INCONCLUSIVE."""
    worst, best = (low, high) if at_least else (high, low)

    def within(value: float) -> bool:
        return value >= limit if at_least else value <= limit

    return PASS if within(worst) else OVER if not within(best) else INCONCLUSIVE


def drift(reading_: dict) -> float | None:
    """max/min of the reference's window p95s: how far the machine itself moved while these were timed."""
    values = reading_.get("reference_window_p95_ms") or []
    return max(values) / min(values) if len(values) > 1 else None
