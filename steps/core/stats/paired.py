"""Champion vs challenger on the same test items: McNemar's exact test and a paired bootstrap interval.

A 0.1 pt accuracy "win" on 10,000 test images is inside chance. Champion and
challenger are scored on the *same* images, so the right comparison is paired:
McNemar's exact test on the images where they disagree, and a bootstrap that
resamples images jointly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats as sps

from steps.core.stats.base import (
    Interval,
    bootstrap_draws,
    check_class_names,
    check_labels,
    check_probability,
    check_resamples,
)

DEFAULT_RESAMPLES = 2000
"""Efron & Tibshirani (1993, ch. 13) ask for 1,000 or more resamples for percentile intervals."""

@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test on paired correctness.

    `b` counts items only the champion gets right, `c` items only the challenger
    gets right; the n - b - c items they agree on carry no information about
    which is better. Under H0 (equally accurate), c ~ Binomial(b + c, 1/2).
    """

    n: int
    b: int
    c: int
    p_value: float
    """Two-sided: the models differ."""
    p_challenger_better: float
    """One-sided: P(C >= c) under H0, small when the challenger wins many disagreements."""


class Verdict(StrEnum):
    BETTER = "better"
    NON_INFERIOR = "non_inferior"
    WORSE_OR_INCONCLUSIVE = "worse_or_inconclusive"


@dataclass(frozen=True)
class PairedComparison:
    """Champion vs challenger on one test set: the tests, the interval, and what they decide."""

    verdict: Verdict
    reason: str
    n: int
    champion_accuracy: float
    challenger_accuracy: float
    mcnemar: McNemar
    difference: Interval
    """Accuracy difference challenger - champion (a fraction), paired percentile bootstrap."""
    significance: float
    non_inferiority_pt: float | None


def mcnemar_exact(champion_correct: np.ndarray, challenger_correct: np.ndarray) -> McNemar:
    """McNemar's exact test: binomial test of c against b + c disagreements, p = 1/2.

    Both p-values are 1.0 when the models never disagree (there is no evidence either way).
    """
    champion, challenger = _paired_correct(champion_correct, challenger_correct)
    b = int(np.count_nonzero(champion & ~challenger))
    c = int(np.count_nonzero(~champion & challenger))
    if b + c == 0:
        return McNemar(len(champion), b, c, 1.0, 1.0)
    two_sided = float(sps.binomtest(c, b + c, 0.5).pvalue)
    one_sided = float(sps.binom.sf(c - 1, b + c, 0.5))  # P(C >= c)
    return McNemar(len(champion), b, c, min(1.0, two_sided), min(1.0, one_sided))


def paired_bootstrap_ci(champion_correct: np.ndarray, challenger_correct: np.ndarray, confidence: float = 0.95,
                        resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of accuracy(challenger) - accuracy(champion).

    Each resample draws n test items with replacement and scores *both* models on
    the same draw, so the strong correlation between their errors narrows the
    interval as it should (an unpaired bootstrap would be far too wide).
    Deterministic for a given seed.
    """
    champion, challenger = _paired_correct(champion_correct, challenger_correct)
    check_probability("confidence", confidence)
    delta = challenger.astype(np.int8) - champion.astype(np.int8)  # +1, 0, -1 per item
    n = len(delta)
    check_resamples(resamples)
    sums = np.empty(resamples, dtype=np.int64)
    for rows, index in bootstrap_draws(n, resamples, seed):
        sums[rows] = delta[index].sum(axis=1, dtype=np.int64)
    alpha = 1.0 - confidence
    low, high = np.quantile(sums / n, [alpha / 2, 1 - alpha / 2])
    return Interval(float(delta.mean(dtype=np.float64)), float(low), float(high), confidence)


def compare_paired(y_true: np.ndarray, pred_champion: np.ndarray, pred_challenger: np.ndarray,
                   class_names: Sequence[str], *, significance: float, non_inferiority_pt: float | None,
                   confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> PairedComparison:
    """Decide champion vs challenger on the same labelled items.

    - better: one-sided McNemar p < significance *and* the bootstrap interval's low end > 0;
    - non_inferior: not better, but the low end > -non_inferiority_pt (None: never);
    - worse_or_inconclusive: otherwise.
    The policy values are required so that they come from params.yaml, not from here.
    """
    check_probability("significance", significance)
    if non_inferiority_pt is not None and not (math.isfinite(non_inferiority_pt) and non_inferiority_pt >= 0):
        raise ValueError(f"non_inferiority_pt must be None or a finite number >= 0, got {non_inferiority_pt!r}")
    names = check_class_names(class_names)
    y_true = check_labels("y_true", y_true, len(names))
    pred_champion = check_labels("pred_champion", pred_champion, len(names))
    pred_challenger = check_labels("pred_challenger", pred_challenger, len(names))
    if not y_true.shape == pred_champion.shape == pred_challenger.shape:
        raise ValueError(f"labels and predictions must have the same shape, got {y_true.shape}, "
                         f"{pred_champion.shape} and {pred_challenger.shape}")
    champion_correct, challenger_correct = pred_champion == y_true, pred_challenger == y_true
    test = mcnemar_exact(champion_correct, challenger_correct)
    interval = paired_bootstrap_ci(champion_correct, challenger_correct, confidence, resamples, seed)
    verdict, reason = _verdict(test, interval, significance, non_inferiority_pt)
    return PairedComparison(
        verdict=verdict, reason=reason, n=len(y_true), champion_accuracy=float(champion_correct.mean()),
        challenger_accuracy=float(challenger_correct.mean()), mcnemar=test, difference=interval,
        significance=significance, non_inferiority_pt=non_inferiority_pt,
    )


def _verdict(test: McNemar, interval: Interval, significance: float,
             margin_pt: float | None) -> tuple[Verdict, str]:
    evidence = (f"{interval.estimate * 100:+.2f} pt, one-sided McNemar p={test.p_challenger_better:.2g} "
                f"(b={test.b}, c={test.c}), {interval.confidence:.0%} CI "
                f"[{interval.low * 100:+.2f}, {interval.high * 100:+.2f}] pt")
    if test.p_challenger_better < significance and interval.low > 0:
        return Verdict.BETTER, f"{Verdict.BETTER}: {evidence}"
    if margin_pt is not None and interval.low * 100 > -margin_pt:
        return Verdict.NON_INFERIOR, f"{Verdict.NON_INFERIOR}: {evidence}, above the -{margin_pt:g} pt margin"
    why = [] if test.p_challenger_better < significance else [f"p >= {significance:g}"]
    if margin_pt is not None:
        why.append(f"CI low end at or below the -{margin_pt:g} pt margin")
    elif interval.low <= 0:
        why.append("CI low end at or below 0")
    return Verdict.WORSE_OR_INCONCLUSIVE, f"{Verdict.WORSE_OR_INCONCLUSIVE}: {evidence}; {', '.join(why)}"


def _paired_correct(champion: np.ndarray, challenger: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    champion, challenger = np.asarray(champion), np.asarray(challenger)
    for name, a in (("champion_correct", champion), ("challenger_correct", challenger)):
        if a.dtype != np.bool_:
            raise ValueError(f"{name} must be a boolean array (e.g. pred == y), got dtype {a.dtype}")
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if champion.shape != challenger.shape:
        raise ValueError(f"champion_correct and challenger_correct must pair item by item, got shapes "
                         f"{champion.shape} and {challenger.shape}")
    return champion, challenger
