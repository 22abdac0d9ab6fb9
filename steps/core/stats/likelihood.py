"""Candidate against reference language model on the same documents: does the per-token log-likelihood drop beyond
noise? A paired percentile bootstrap that resamples documents.

Why documents, not tokens: a document's tokens share a topic, a style and each other's context, so their
log-likelihood differences are correlated; resampling tokens as if independent makes the interval far too narrow.
The document is the unit the data was drawn in (the split is made by document, steps/sources/documents.py).
Why paired: both models score the same documents, and their per-document differences vary far less than either
model's log-likelihoods do.

The statistic is the token-weighted mean difference, sum over documents of (candidate - reference) log-likelihood
sums over the sum of their tokens: on the whole split it is exactly log(ppl_reference / ppl_candidate), so the
interval is one of the perplexity ratio too (perplexity_ratio), and a long document weighs as its tokens do
rather than as much as a one-line one (a plain mean of per-document means would be another estimand: the
typical document's difference, dominated by the many short ones). Inputs are steps/compression/language.py
document_sums' arrays; nats throughout.
"""

from __future__ import annotations

import math

import numpy as np

from steps.core.stats.base import Interval, bootstrap_draws, check_probability, check_resamples

DEFAULT_RESAMPLES = 2000
"""Efron & Tibshirani (1993, ch. 13) ask for 1,000 or more resamples for percentile intervals."""

def paired_document_bootstrap(reference_sums: np.ndarray, candidate_sums: np.ndarray, tokens: np.ndarray,
                              confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                              seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the per-token mean log-likelihood difference, candidate - reference
    (nats; below 0: the candidate is worse), documents resampled with replacement and each resample scoring both
    models on the same draw. Documents with no predicted token carry nothing and are left out of the draws.
    Deterministic for a given seed."""
    reference, candidate, counts = _paired(reference_sums, candidate_sums, tokens)
    check_probability("confidence", confidence)
    kept = counts > 0
    delta, counts = (candidate - reference)[kept], counts[kept]
    check_resamples(resamples)
    means = np.empty(resamples, dtype=np.float64)
    for rows, index in bootstrap_draws(len(delta), resamples, seed):
        means[rows] = delta[index].sum(axis=1) / counts[index].sum(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(delta.sum() / counts.sum()), float(low), float(high), confidence)


def perplexity_ratio(difference: Interval) -> Interval:
    """ppl_candidate / ppl_reference and its interval from the mean log-likelihood difference's: exp(-d), the
    ends swapped (a monotone map carries a percentile interval over exactly). Above 1: the candidate is worse."""
    return Interval(math.exp(-difference.estimate), math.exp(-difference.high), math.exp(-difference.low),
                    difference.confidence)


def _paired(reference: np.ndarray, candidate: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, ...]:
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    tokens = np.asarray(tokens)
    for name, a in (("reference_sums", reference), ("candidate_sums", candidate), ("tokens", tokens)):
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array (one entry per document), got shape {a.shape}")
    if not reference.shape == candidate.shape == tokens.shape:
        raise ValueError(f"reference_sums, candidate_sums and tokens must pair document by document, got shapes "
                         f"{reference.shape}, {candidate.shape} and {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer) or tokens.min() < 0 or tokens.max() == 0:
        raise ValueError(f"tokens must be non-negative integer counts, not all 0, got dtype {tokens.dtype} "
                         f"min {tokens.min()} max {tokens.max()}")
    if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(candidate))):
        raise ValueError("reference_sums and candidate_sums must be finite (an -inf log-likelihood is a probability "
                         "of 0, a scoring bug)")
    return reference, candidate, tokens.astype(np.int64)
