"""Pruning schedules: pure functions (target, rounds) -> sparsity after each round.

Every schedule ends exactly at `target` and never decreases.
"""

from __future__ import annotations

from collections.abc import Callable

from steps.compression import choices

Schedule = Callable[[float, int], list[float]]


def one_shot(target: float, rounds: int) -> list[float]:
    """Prune to the target at once; the remaining rounds only fine-tune."""
    return [target] * rounds


def linear(target: float, rounds: int) -> list[float]:
    """Equal sparsity steps."""
    return [target * t / rounds for t in range(1, rounds + 1)]


def geometric(target: float, rounds: int) -> list[float]:
    """Remove the same fraction of the *remaining* weights each round (Han et al. 2015, iterative)."""
    return [1 - (1 - target) ** (t / rounds) for t in range(1, rounds + 1)]


def cubic(target: float, rounds: int, initial: float = 0.0) -> list[float]:
    """Zhu & Gupta 2017: s_t = s_f + (s_i - s_f)(1 - t/n)^3, fast early, gentle late."""
    return [target + (initial - target) * (1 - t / rounds) ** 3 for t in range(1, rounds + 1)]


SCHEDULES = choices.SCHEDULES  # name -> one of the functions above


def get_schedule(name: str) -> Schedule:
    return SCHEDULES.resolve(name)


def per_round(name: str, final: float, rounds: int) -> list[float]:
    """The fraction removed after each of `rounds` rounds on the way to `final` by schedule `name`: all zeros when
    nothing is removed (a transformer plan's axes that stay whole)."""
    return get_schedule(name)(final, rounds) if final > 0 else [0.0] * rounds
