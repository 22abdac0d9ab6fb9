"""steps/core/stats.py: exact golden values, scipy cross-checks, and coverage on constructed populations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from steps.core import stats

NAMES = tuple(f"class{i}" for i in range(10))


def paired(both_right: int, b: int, c: int, both_wrong: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correctness arrays with exactly b champion-only and c challenger-only right answers, in shuffled order."""
    champion = np.array([True] * both_right + [True] * b + [False] * c + [False] * both_wrong)
    challenger = np.array([True] * both_right + [False] * b + [True] * c + [False] * both_wrong)
    order = np.random.default_rng(seed).permutation(len(champion))
    return champion[order], challenger[order]


def predictions(champion: np.ndarray, challenger: np.ndarray, seed: int = 0):
    """Labels over 10 classes and predictions that are right exactly where the correctness arrays say."""
    y = np.random.default_rng(seed).integers(0, 10, size=len(champion))
    wrong = (y + 1) % 10
    return y, np.where(champion, y, wrong), np.where(challenger, y, wrong)


def binom_pmf(n: int, q: float) -> list[float]:
    return [math.comb(n, k) * q**k * (1 - q) ** (n - k) for k in range(n + 1)]


# --- McNemar ---------------------------------------------------------------------------------------------


def test_mcnemar_golden_one_versus_nine():
    result = stats.mcnemar_exact(*paired(both_right=50, b=1, c=9))
    assert (result.n, result.b, result.c) == (60, 1, 9)
    assert result.p_value == pytest.approx(22 / 1024, rel=1e-12)  # 2 * P(X <= 1), X ~ Bin(10, 1/2)
    assert result.p_challenger_better == pytest.approx(11 / 1024, rel=1e-12)  # P(X >= 9)


def test_mcnemar_one_sided_points_at_the_challenger():
    result = stats.mcnemar_exact(*paired(both_right=50, b=9, c=1))
    assert result.p_value == pytest.approx(22 / 1024, rel=1e-12)
    assert result.p_challenger_better == pytest.approx(1023 / 1024, rel=1e-12)  # P(X >= 1)


@pytest.mark.parametrize(("b", "c"), [(5, 5), (0, 0)])
def test_mcnemar_no_evidence_gives_p_one(b, c):
    result = stats.mcnemar_exact(*paired(both_right=20, b=b, c=c, both_wrong=3))
    assert result.p_value == 1.0
    assert result.p_challenger_better >= 0.5


@pytest.mark.parametrize(("b", "c"), [(0, 7), (3, 11), (40, 25), (31, 73), (500, 560)])
def test_mcnemar_matches_scipy_binomtest(b, c):
    result = stats.mcnemar_exact(*paired(both_right=100, b=b, c=c, both_wrong=7))
    assert result.p_value == pytest.approx(sps.binomtest(c, b + c, 0.5).pvalue, rel=1e-9)
    assert result.p_challenger_better == pytest.approx(
        sps.binomtest(c, b + c, 0.5, alternative="greater").pvalue, rel=1e-9)


def test_mcnemar_ignores_items_both_models_agree_on():
    small = stats.mcnemar_exact(*paired(both_right=10, b=4, c=12))
    large = stats.mcnemar_exact(*paired(both_right=9000, b=4, c=12, both_wrong=900))
    assert (small.p_value, small.p_challenger_better) == (large.p_value, large.p_challenger_better)


@pytest.mark.parametrize(("champion", "challenger", "message"), [
    (np.array([1, 0, 1]), np.array([True, False, True]), "boolean"),
    (np.array([True, False]), np.array([True, False, True]), "pair item by item"),
    (np.ones((2, 2), dtype=bool), np.ones((2, 2), dtype=bool), "1-D"),
    (np.array([], dtype=bool), np.array([], dtype=bool), "non-empty"),
])
def test_mcnemar_rejects_bad_input(champion, challenger, message):
    with pytest.raises(ValueError, match=message):
        stats.mcnemar_exact(champion, challenger)


# --- paired bootstrap ------------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_under_a_seed():
    champion, challenger = paired(both_right=800, b=40, c=60, both_wrong=100)
    first = stats.paired_bootstrap_ci(champion, challenger, resamples=500, seed=7)
    again = stats.paired_bootstrap_ci(champion, challenger, resamples=500, seed=7)
    other = stats.paired_bootstrap_ci(champion, challenger, resamples=500, seed=8)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.estimate == pytest.approx(0.02)
    assert first.low < first.estimate < first.high


def test_bootstrap_width_matches_the_paired_normal_approximation():
    # Errors mostly shared (both wrong on 10%): an unpaired interval would be ~2.3x wider than this.
    champion, challenger = paired(both_right=8600, b=100, c=300, both_wrong=1000)
    interval = stats.paired_bootstrap_ci(champion, challenger, confidence=0.95, resamples=2000)
    n, p_b, p_c = 10_000, 0.01, 0.03
    half_width = 1.959964 * math.sqrt((p_b + p_c - (p_c - p_b) ** 2) / n)
    assert (interval.high - interval.low) / 2 == pytest.approx(half_width, rel=0.1)
    assert interval.low > 0  # a clearly better challenger


def test_bootstrap_covers_the_true_difference_at_its_nominal_rate():
    # Population: both wrong 10%, champion-only right 1%, challenger-only right 3%: true difference +2 pt.
    true_difference, hits, trials = 0.02, 0, 200
    for trial in range(trials):
        u = np.random.default_rng(1000 + trial).random(500)
        champion = (u >= 0.10) & ~((u >= 0.11) & (u < 0.14))
        challenger = (u >= 0.11)
        interval = stats.paired_bootstrap_ci(champion, challenger, confidence=0.95, resamples=400, seed=trial)
        hits += interval.contains(true_difference)
    assert 0.90 <= hits / trials <= 0.99


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"confidence": 1.0}, "confidence"), ({"confidence": 0.0}, "confidence"), ({"resamples": 0}, "resamples"),
])
def test_bootstrap_rejects_bad_options(kwargs, message):
    champion, challenger = paired(both_right=10, b=2, c=3)
    with pytest.raises(ValueError, match=message):
        stats.paired_bootstrap_ci(champion, challenger, **kwargs)


# --- per-class recall ------------------------------------------------------------------------------------


def test_per_class_recall_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 2])
    recall = stats.per_class_recall(y_true, y_pred, num_classes=4)
    np.testing.assert_allclose(recall[:3], [2 / 3, 1 / 2, 1.0])
    assert np.isnan(recall[3])  # class 3 never occurs in y_true


@pytest.mark.parametrize(("y_true", "y_pred", "message"), [
    (np.array([0, 1, 4]), np.array([0, 1, 2]), "outside"),
    (np.array([0, 1, 2]), np.array([0.0, 1.0, 2.0]), "integer"),
    (np.array([0, 1, 2]), np.array([0, 1]), "same shape"),
])
def test_per_class_recall_rejects_bad_labels(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        stats.per_class_recall(y_true, y_pred, num_classes=4)


def test_worst_class_drop_names_the_class():
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    reference = np.array([0, 0, 0, 0, 1, 1, 1, 0, 2, 2])  # recalls 1, 3/4, 1
    candidate = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])  # recalls 1, 1/2, 1
    drop = stats.worst_class_drop(y_true, reference, candidate, ["shirt", "coat", "bag", "boot"])
    assert (drop.index, drop.name) == (1, "coat")
    assert (drop.reference_recall, drop.candidate_recall) == (0.75, 0.5)
    assert drop.drop_pt == pytest.approx(25.0)


def test_worst_class_drop_tie_goes_to_the_lower_index():
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    reference = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    candidate = np.array([0, 0, 0, 1, 1, 1, 1, 0])  # both classes lose 25 pt
    assert stats.worst_class_drop(y_true, reference, candidate, ["shirt", "coat"]).name == "shirt"


def test_worst_class_drop_ignores_classes_absent_from_the_test_set():
    y_true = np.array([0, 0, 1, 1])
    reference = np.array([1, 0, 0, 1])  # recalls 1/2, 1/2; class 2 absent
    candidate = np.array([0, 0, 1, 1])  # recalls 1, 1: every present class improves
    drop = stats.worst_class_drop(y_true, reference, candidate, ["a", "b", "absent"])
    assert drop.name == "a"
    assert drop.drop_pt == pytest.approx(-50.0)


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
    assert stats.quantile_ci(np.array([5.0, 1.0, 3.0, 2.0, 6.0, 4.0]), q=0.5) == stats.Interval(3.5, 1.0, 6.0, 0.95)


@pytest.mark.parametrize("samples", [np.array([1.0, np.nan] * 50), np.ones((10, 10)), np.array([], dtype=float)])
def test_quantile_ci_rejects_bad_samples(samples):
    with pytest.raises(ValueError, match="samples"):
        stats.quantile_ci(samples)


# --- the decision ----------------------------------------------------------------------------------------


def decide(b: int, c: int, margin_pt: float | None = None, both_right: int = 880, both_wrong: int = 100):
    y, champion, challenger = predictions(*paired(both_right, b, c, both_wrong))
    return stats.compare_paired(y, champion, challenger, NAMES, significance=0.05, non_inferiority_pt=margin_pt,
                                confidence=0.95, resamples=1000, seed=0)


def test_a_tenth_of_a_point_on_1000_items_is_not_better():
    result = decide(b=10, c=11, both_right=879)
    assert result.challenger_accuracy - result.champion_accuracy == pytest.approx(0.001)
    assert result.verdict == stats.Verdict.WORSE_OR_INCONCLUSIVE
    assert result.reason.startswith("worse_or_inconclusive: +0.10 pt, one-sided McNemar p=")
    assert "p >= 0.05" in result.reason


def test_five_points_on_1000_items_is_better():
    result = decide(b=10, c=60, both_right=830)
    assert result.verdict == stats.Verdict.BETTER
    assert result.mcnemar.p_challenger_better < 1e-9
    assert result.difference.low > 0
    assert result.reason.startswith("better: +5.00 pt, one-sided McNemar p=")
    assert "(b=10, c=60), 95% CI [+" in result.reason


def test_non_inferior_within_the_margin_and_not_beyond():
    assert decide(b=11, c=10, margin_pt=2.0, both_right=879).verdict == stats.Verdict.NON_INFERIOR
    worse = decide(b=60, c=10, margin_pt=2.0, both_right=830)
    assert worse.verdict == stats.Verdict.WORSE_OR_INCONCLUSIVE
    assert "-2 pt margin" in worse.reason


def test_to_dict_is_strict_json_even_with_a_class_missing_from_the_test_set():
    champion, challenger = paired(both_right=80, b=5, c=15)
    y = np.zeros(len(champion), dtype=int)  # only class 0 occurs
    result = stats.compare_paired(y, np.where(champion, 0, 1), np.where(challenger, 0, 1), ["t-shirt", "trouser"],
                                  significance=0.05, non_inferiority_pt=None)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["verdict"] == str(result.verdict)
    assert data["champion_recall"][0] == pytest.approx(0.85) and data["champion_recall"][1] is None
    assert data["worst_class"]["name"] == "t-shirt"
    assert data["mcnemar"] == {"n": 100, "b": 5, "c": 15, "p_value": result.mcnemar.p_value,
                               "p_challenger_better": result.mcnemar.p_challenger_better}


def test_compare_paired_rejects_predictions_of_a_different_length():
    y, champion, challenger = predictions(*paired(both_right=20, b=2, c=3))
    with pytest.raises(ValueError, match="same shape"):
        stats.compare_paired(y, champion, challenger[:-1], NAMES, significance=0.05, non_inferiority_pt=None)


def test_wilson_and_newcombe_against_published_values():
    """Newcombe (1998), Stat Med 17:873, table II: 56/70 vs 48/80 -> 95% CI of the difference 0.0524 to 0.3339;
    Wilson for 81/263 at 95%: 0.2553 to 0.3662 (his table I)."""
    from steps.core.stats import class_drops_unpaired, wilson_interval

    low, high = wilson_interval(81, 263, 0.95)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    [drop] = class_drops_unpaired([56 / 70], [48 / 80], [70], ["a"], 0.95)  # equal n only: use his exact counts below
    assert drop.drop_pt == pytest.approx(20.0)
    r_low, _ = wilson_interval(56, 70, 0.95)
    _, c_high = wilson_interval(48, 80, 0.95)
    newcombe_low = 0.2 - ((0.8 - r_low) ** 2 + (c_high - 0.6) ** 2) ** 0.5
    assert round(newcombe_low, 4) == 0.0524
    [perfect] = class_drops_unpaired([1.0], [11 / 16], [16], ["x"], 0.9)  # Wald's interval collapses at 1.0
    assert 0 < perfect.drop_low_pt < perfect.drop_pt
