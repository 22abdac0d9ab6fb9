"""What the statistics modules share: the interval they return and the checks of their arguments."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate and a confidence interval [low, high] around it."""

    estimate: float
    low: float
    high: float
    confidence: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def check_probability(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")


def check_labels(name: str, a: np.ndarray, num_classes: int) -> np.ndarray:
    """`a` as a non-empty 1-D array of class indices in [0, num_classes); ValueError naming `name` otherwise."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if a.min() < 0 or a.max() >= num_classes:
        raise ValueError(f"{name} has class indices outside [0, {num_classes}): min {a.min()}, max {a.max()}")
    return a.astype(np.intp, copy=False)


def check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(class_names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"class_names must be a non-empty sequence of strings, got {class_names!r}")
    return names


BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22
"""Index entries drawn per chunk (16 MiB of int32): bounds memory, keeps numpy's loops long."""


def bootstrap_draws(n: int, resamples: int, seed: int) -> Iterator[tuple[slice, np.ndarray]]:
    """`resamples` draws of n items with replacement, as (the resamples' rows, their indices (rows, n)) a chunk at a
    time; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    rows = max(1, BOOTSTRAP_CHUNK_ELEMENTS // n)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        yield slice(start, stop), rng.integers(0, n, size=(stop - start, n), dtype=np.int32 if n < 2**31 else np.int64)


def check_resamples(resamples: int) -> None:
    if not isinstance(resamples, int | np.integer) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")

