"""Statistics for promotion decisions that survive noise: paired tests, bootstrap and quantile intervals.

A 0.1 pt accuracy "win" on 10,000 test images is inside chance. Champion and
challenger are scored on the *same* images, so the right comparison is paired:
McNemar's exact test on the images where they disagree, and a bootstrap that
resamples images jointly. Pure numpy/scipy; accuracies and differences are
fractions (0.0123), reasons print percentage points (+1.23 pt).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
from scipy import stats as sps

DEFAULT_RESAMPLES = 2000
"""Efron & Tibshirani (1993, ch. 13) ask for 1,000 or more resamples for percentile intervals."""

_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22
"""Index entries drawn per chunk (16 MiB of int32): bounds memory, keeps numpy's loops long."""


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


@dataclass(frozen=True)
class Interval:
    """A point estimate and a confidence interval [low, high] around it."""

    estimate: float
    low: float
    high: float
    confidence: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class ClassDrop:
    """The class whose recall falls most from reference to candidate (drop_pt < 0: every class improved)."""

    index: int
    name: str
    reference_recall: float
    candidate_recall: float
    drop_pt: float


class Verdict(StrEnum):
    BETTER = "better"
    NON_INFERIOR = "non_inferior"
    WORSE_OR_INCONCLUSIVE = "worse_or_inconclusive"


@dataclass(frozen=True)
class PairedComparison:
    """Champion vs challenger on one test set: the tests, the intervals, and what they decide."""

    verdict: Verdict
    reason: str
    n: int
    champion_accuracy: float
    challenger_accuracy: float
    mcnemar: McNemar
    difference: Interval
    """Accuracy difference challenger - champion (a fraction), paired percentile bootstrap."""
    worst_class: ClassDrop
    class_names: tuple[str, ...]
    champion_recall: tuple[float, ...]
    challenger_recall: tuple[float, ...]
    significance: float
    non_inferiority_pt: float | None

    def to_dict(self) -> dict:
        """JSON-ready: NaN recalls (classes absent from the test set) become None, which strict parsers accept."""
        return _json_safe(asdict(self) | {"verdict": str(self.verdict)})


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
    _check_probability("confidence", confidence)
    if not isinstance(resamples, int | np.integer) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    delta = challenger.astype(np.int8) - champion.astype(np.int8)  # +1, 0, -1 per item
    n = len(delta)
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    sums = np.empty(resamples, dtype=np.int64)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        index = rng.integers(0, n, size=(stop - start, n), dtype=np.int32 if n < 2**31 else np.int64)
        sums[start:stop] = delta[index].sum(axis=1, dtype=np.int64)
    alpha = 1.0 - confidence
    low, high = np.quantile(sums / n, [alpha / 2, 1 - alpha / 2])
    return Interval(float(delta.mean(dtype=np.float64)), float(low), float(high), confidence)


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of each class 0..num_classes-1 (float64); NaN for a class that never occurs in y_true."""
    if not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    y_true = _labels("y_true", y_true, num_classes)
    y_pred = _labels("y_pred", y_pred, num_classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}")
    support = np.bincount(y_true, minlength=num_classes)
    hits = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / support, np.nan)


def worst_class_drop(y_true: np.ndarray, pred_reference: np.ndarray, pred_candidate: np.ndarray,
                     class_names: Sequence[str]) -> ClassDrop:
    """The class whose recall drops most (in pt) from reference to candidate; ties go to the lower index.

    Classes absent from y_true have no recall and cannot be the worst.
    """
    names = _class_names(class_names)
    reference = per_class_recall(y_true, pred_reference, len(names))
    candidate = per_class_recall(y_true, pred_candidate, len(names))
    drop = (reference - candidate) * 100.0
    worst = int(np.nanargmax(drop))  # y_true is non-empty, so at least one class is present
    return ClassDrop(worst, names[worst], float(reference[worst]), float(candidate[worst]), float(drop[worst]))


def min_samples_for_quantile(q: float, confidence: float) -> int:
    """The fewest i.i.d. samples for which quantile_ranks exists: max(q, 1-q)^n <= (1 - confidence) / 2.

    Below it even [min, max] misses the q-quantile with probability above
    (1 - confidence) / 2 on one side. For p95 at 95% confidence that is 72.
    """
    _check_probability("q", q)
    _check_probability("confidence", confidence)
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


def compare_paired(y_true: np.ndarray, pred_champion: np.ndarray, pred_challenger: np.ndarray,
                   class_names: Sequence[str], *, significance: float, non_inferiority_pt: float | None,
                   confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> PairedComparison:
    """Decide champion vs challenger on the same labelled items.

    - better: one-sided McNemar p < significance *and* the bootstrap interval's low end > 0;
    - non_inferior: not better, but the low end > -non_inferiority_pt (None: never);
    - worse_or_inconclusive: otherwise.
    The policy values are required so that they come from params.yaml, not from here.
    """
    _check_probability("significance", significance)
    if non_inferiority_pt is not None and not (math.isfinite(non_inferiority_pt) and non_inferiority_pt >= 0):
        raise ValueError(f"non_inferiority_pt must be None or a finite number >= 0, got {non_inferiority_pt!r}")
    names = _class_names(class_names)
    y_true = _labels("y_true", y_true, len(names))
    pred_champion = _labels("pred_champion", pred_champion, len(names))
    pred_challenger = _labels("pred_challenger", pred_challenger, len(names))
    if not y_true.shape == pred_champion.shape == pred_challenger.shape:
        raise ValueError(f"labels and predictions must have the same shape, got {y_true.shape}, "
                         f"{pred_champion.shape} and {pred_challenger.shape}")
    champion_correct, challenger_correct = pred_champion == y_true, pred_challenger == y_true
    test = mcnemar_exact(champion_correct, challenger_correct)
    interval = paired_bootstrap_ci(champion_correct, challenger_correct, confidence, resamples, seed)
    verdict, reason = _verdict(test, interval, significance, non_inferiority_pt)
    return PairedComparison(
        verdict, reason, len(y_true), float(champion_correct.mean()), float(challenger_correct.mean()), test,
        interval, worst_class_drop(y_true, pred_champion, pred_challenger, names), names,
        tuple(float(r) for r in per_class_recall(y_true, pred_champion, len(names))),
        tuple(float(r) for r in per_class_recall(y_true, pred_challenger, len(names))),
        significance, non_inferiority_pt,
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


def _labels(name: str, a: np.ndarray, num_classes: int) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if a.min() < 0 or a.max() >= num_classes:
        raise ValueError(f"{name} has class indices outside [0, {num_classes}): min {a.min()}, max {a.max()}")
    return a.astype(np.intp, copy=False)


def _class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(class_names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"class_names must be a non-empty sequence of strings, got {class_names!r}")
    return names


def _check_probability(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


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


def class_drops_paired(y_true: np.ndarray, pred_reference: np.ndarray, pred_candidate: np.ndarray,
                       class_names: Sequence[str], confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                       seed: int = 0) -> list[ClassDropBound]:
    """Per class (present in y_true): the recall drop and the low end of its paired bootstrap interval.

    The bootstrap runs on that class's items only, both models scored on the same draw
    (paired_bootstrap_ci); `confidence` is two-sided, so the low end is a one-sided bound at
    1 - (1 - confidence) / 2.
    """
    names = _class_names(class_names)
    y_true = _labels("y_true", y_true, len(names))
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
    _check_probability("confidence", confidence)
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
    names = _class_names(class_names)
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
