"""steps/core/stats/paired.py: McNemar golden values and scipy cross-checks, the paired bootstrap's
width and coverage on constructed populations, and the decision they make."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from steps.core.stats import paired as stats

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


def test_compare_paired_with_a_class_missing_from_the_test_set():
    champion, challenger = paired(both_right=80, b=5, c=15)
    y = np.zeros(len(champion), dtype=int)  # only class 0 occurs
    result = stats.compare_paired(y, np.where(champion, 0, 1), np.where(challenger, 0, 1), ["t-shirt", "trouser"],
                                  significance=0.05, non_inferiority_pt=None)
    assert (result.champion_accuracy, result.challenger_accuracy) == (0.85, 0.95)
    assert (result.mcnemar.n, result.mcnemar.b, result.mcnemar.c) == (100, 5, 15)


def test_compare_paired_rejects_predictions_of_a_different_length():
    y, champion, challenger = predictions(*paired(both_right=20, b=2, c=3))
    with pytest.raises(ValueError, match="same shape"):
        stats.compare_paired(y, champion, challenger[:-1], NAMES, significance=0.05, non_inferiority_pt=None)
