"""steps/core/stats/likelihood.py: the token-weighted paired document bootstrap and the perplexity ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steps.core.stats import likelihood
from steps.core.stats.base import Interval


def test_the_estimate_weighs_documents_by_their_tokens():
    """Two documents: 1 token 1 nat worse, 9 tokens unchanged. Per token: -0.1; a mean of per-document means
    would say -0.5."""
    result = likelihood.paired_document_bootstrap(np.array([-2.0, -9.0]), np.array([-3.0, -9.0]), np.array([1, 9]))
    assert result.estimate == pytest.approx(-0.1)
    assert -1.0 <= result.low <= result.estimate <= result.high <= 0.0


def test_a_constant_per_token_shift_gives_a_point_interval():
    tokens = np.array([3, 10, 1, 7])
    reference = np.array([-5.0, -20.0, -1.0, -9.0])
    result = likelihood.paired_document_bootstrap(reference, reference - 0.25 * tokens, tokens, resamples=300)
    assert (result.estimate, result.low, result.high) == pytest.approx((-0.25, -0.25, -0.25))


def test_documents_without_targets_do_not_move_the_interval():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 30, size=40)
    reference = -2.0 * tokens + rng.normal(size=40)
    candidate = reference + rng.normal(-0.1, 1.0, size=40)
    plain = likelihood.paired_document_bootstrap(reference, candidate, tokens, seed=3)
    padded = likelihood.paired_document_bootstrap(np.append(reference, [0.0, 0.0]), np.append(candidate, [0.0, 0.0]),
                                                  np.append(tokens, [0, 0]), seed=3)
    assert padded == plain
    assert likelihood.paired_document_bootstrap(reference, candidate, tokens, seed=4) != plain  # the seed draws


def test_the_interval_covers_the_population_difference():
    """Documents drawn from a population whose per-token difference is -0.2: about 95% of 95% intervals cover it."""
    covered = 0
    for trial in range(100):
        rng = np.random.default_rng(trial)
        tokens = rng.integers(5, 50, size=60)
        difference = -0.2 * tokens + rng.normal(0, 0.3, size=60) * np.sqrt(tokens)
        result = likelihood.paired_document_bootstrap(np.zeros(60), difference, tokens, resamples=400, seed=trial)
        covered += result.contains(-0.2)
    assert 85 <= covered <= 100


def test_perplexity_ratio_maps_the_ends_over():
    ratio = likelihood.perplexity_ratio(Interval(-0.1, -0.3, 0.05, 0.95))
    assert ratio == Interval(math.exp(0.1), math.exp(-0.05), math.exp(0.3), 0.95)


@pytest.mark.parametrize(("reference", "candidate", "tokens", "message"), [
    ([1.0], [1.0, 2.0], [1], "pair document by document"),
    ([-1.0], [-np.inf], [1], "must be finite"),
    ([-1.0], [-1.0], [0], "not all 0"),
    ([-1.0], [-1.0], [1.5], "integer counts"),
    ([], [], [], "non-empty"),
])
def test_bad_arguments_are_refused_by_name(reference, candidate, tokens, message):
    with pytest.raises(ValueError, match=message):
        likelihood.paired_document_bootstrap(np.array(reference), np.array(candidate), np.array(tokens))
