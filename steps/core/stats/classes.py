"""Recall per class and its drop from a reference model to a candidate, with a confidence bound.

A model that wins on average can still break one class. The promote stage's per-class gates refuse a
candidate only when some class's drop is past the limit beyond noise: its lower confidence bound is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from steps.core.stats.base import check_class_names, check_labels, check_probability
from steps.core.stats.paired import DEFAULT_RESAMPLES, paired_bootstrap_ci


@dataclass(frozen=True)
class ClassDropBound:
    """One class's recall drop from reference to candidate (pt) and its one-sided lower confidence bound."""

    index: int
    name: str
    reference_recall: float
    candidate_recall: float
    drop_pt: float
    drop_low_pt: float
    """The drop exceeds this with the stated confidence; a gate refuses only a class whose bound passes its limit."""
    support: int


def _checked(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Both label arrays checked against `num_classes` and each other's shape."""
    if not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    y_true = check_labels("y_true", y_true, num_classes)
    y_pred = check_labels("y_pred", y_pred, num_classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}")
    return y_true, y_pred


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of each class 0..num_classes-1 (float64); NaN for a class that never occurs in y_true."""
    y_true, y_pred = _checked(y_true, y_pred, num_classes)
    support = np.bincount(y_true, minlength=num_classes)
    hits = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / support, np.nan)


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """F1 of each class 0..num_classes-1 from the confusion counts: 2 TP / (2 TP + FP + FN) (float64), which is the
    harmonic mean of precision and recall without dividing by a zero count: 0 for a class that occurs but is never
    predicted (or predicted but never occurs); NaN for a class neither in y_true nor in y_pred."""
    y_true, y_pred = _checked(y_true, y_pred, num_classes)
    tp = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    support = np.bincount(y_true, minlength=num_classes)  # TP + FN
    predicted = np.bincount(y_pred, minlength=num_classes)  # TP + FP
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """The unweighted mean of per_class_f1 over the classes that occur in y_true or y_pred (scikit-learn's
    f1_score(average="macro")): every class counts alike, so on imbalanced data (spam is a third of mail) a
    model that never says the rare class scores about half, where its accuracy still looks good."""
    return float(np.nanmean(per_class_f1(y_true, y_pred, num_classes)))


def class_drops_paired(y_true: np.ndarray, pred_reference: np.ndarray, pred_candidate: np.ndarray,
                       class_names: Sequence[str], confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                       seed: int = 0) -> list[ClassDropBound]:
    """Per class (present in y_true): the recall drop and the low end of its paired bootstrap interval.

    The bootstrap runs on that class's items only, both models scored on the same draw
    (paired_bootstrap_ci); `confidence` is two-sided, so the low end is a one-sided bound at
    1 - (1 - confidence) / 2.
    """
    names = check_class_names(class_names)
    y_true = check_labels("y_true", y_true, len(names))
    out = []
    for k, name in enumerate(names):
        items = y_true == k
        if not items.any():
            continue
        ref, cand = pred_reference[items] == k, pred_candidate[items] == k
        gain = paired_bootstrap_ci(ref, cand, confidence, resamples, seed + k)
        out.append(ClassDropBound(k, name, float(ref.mean()), float(cand.mean()), -gain.estimate * 100,
                                  -gain.high * 100, int(items.sum())))
    return out


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (stays inside [0, 1] and is sane at 0/n and n/n)."""
    check_probability("confidence", confidence)
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def class_drops_unpaired(reference_recall: Sequence[float], candidate_recall: Sequence[float],
                         support: Sequence[int], class_names: Sequence[str],
                         confidence: float = 0.95) -> list[ClassDropBound]:
    """Per class: the recall drop from recalls and supports alone (no per-item pairing known).

    Newcombe's hybrid score interval of a difference of two independent proportions (Newcombe
    1998, method 10, from Wilson intervals): unlike the Wald interval it holds at recall 1.0 and
    with 20 images a class (one image is 5 pt). Two models' errors on the same images are
    positively correlated, so treating them as independent widens the interval: the bound errs
    in the candidate's favour, never against it.
    """
    names = check_class_names(class_names)
    if not len(reference_recall) == len(candidate_recall) == len(support) == len(names):
        raise ValueError(f"one recall and one support per class expected ({len(names)} classes), got "
                         f"{len(reference_recall)}, {len(candidate_recall)} and {len(support)}")
    out = []
    for k, (r, c, n) in enumerate(zip(reference_recall, candidate_recall, support, strict=True)):
        if n <= 0 or r is None or c is None or math.isnan(r) or math.isnan(c):
            continue
        r_low, _ = wilson_interval(round(r * n), n, confidence)
        _, c_high = wilson_interval(round(c * n), n, confidence)
        low = (r - c) - math.sqrt((r - r_low) ** 2 + (c_high - c) ** 2)
        out.append(ClassDropBound(k, names[k], float(r), float(c), (r - c) * 100, low * 100, int(n)))
    return out


def worst_of(drops: Sequence[ClassDropBound]) -> ClassDropBound:
    """The class with the largest drop (ties: lower index); ValueError when no class is present."""
    if not drops:
        raise ValueError("no class is present in the test labels")
    return max(drops, key=lambda d: (d.drop_pt, -d.index))
