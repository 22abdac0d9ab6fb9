"""steps/compression/language.py: token log-likelihoods against a hand loop, targets assigned to their documents,
perplexity and bits per byte by hand, and the paired document bootstrap telling a noisier model from the same one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from steps.compression import language
from steps.core.stats import likelihood
from tests.compression.lm import packed_split, tiny_llama

BLOCK = 16


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return tiny_llama()


@pytest.fixture(scope="module")
def split():
    return packed_split(documents=60, block_size=BLOCK, seed=1)


def _hand_log_likelihoods(model, ids: np.ndarray) -> list[list[float]]:
    """log p(ids[i, j + 1] | ids[i, :j + 1]) token by token, softmax written out with math.exp and math.log."""
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids.astype(np.int64))).logits.double().tolist()
    out = []
    for i, row in enumerate(ids):
        out.append([])
        for j in range(len(row) - 1):
            scores = logits[i][j]
            top = max(scores)
            normaliser = top + math.log(sum(math.exp(s - top) for s in scores))
            out[-1].append(scores[int(row[j + 1])] - normaliser)
    return out


def test_log_likelihoods_match_a_hand_loop(model, split):
    ids = split["input_ids"][:3]
    scores = language.token_scores(model, ids, batch_size=2)
    assert scores.log_likelihood.dtype == torch.float64 and scores.log_likelihood.shape == (3, BLOCK - 1)
    # the normaliser is a float32 logsumexp (language._scored): a float64 loop agrees to float32's rounding
    assert scores.log_likelihood.numpy() == pytest.approx(np.array(_hand_log_likelihoods(model, ids)), abs=2e-6)
    with torch.no_grad():
        argmax = model(input_ids=torch.from_numpy(ids.astype(np.int64))).logits[:, :-1].argmax(-1)
    assert torch.equal(scores.correct, argmax == torch.from_numpy(ids[:, 1:].astype(np.int64)))


def test_perplexity_and_bits_per_byte_by_hand(model, split):
    ids = split["input_ids"]
    hand = _hand_log_likelihoods(model, ids)
    starts, size = split["document_starts"].tolist(), split["document_bytes"].tolist()
    total, count, share = 0.0, 0, [0] * len(size)
    for i, row in enumerate(hand):
        for j, ll in enumerate(row):
            total, count = total + ll, count + 1
            position = i * BLOCK + j + 1
            doc = next(d for d in range(len(size)) if starts[d] <= position < starts[d + 1])
            share[doc] += 1
    covered = sum(size[d] * share[d] / (starts[d + 1] - starts[d]) for d in range(len(size)))
    scores = language.token_scores(model, ids, batch_size=8)
    metrics = language.lm_metrics(scores.log_likelihood, scores.correct, split["document_starts"],
                                  split["document_bytes"])
    assert metrics["tokens"] == count == len(ids) * (BLOCK - 1)
    assert metrics["perplexity"] == pytest.approx(math.exp(-total / count), rel=1e-6)
    assert metrics["loss"] == pytest.approx(-total / count, rel=1e-6)
    assert metrics["bits_per_byte"] == pytest.approx(-total / math.log(2) / covered, rel=1e-6)
    assert metrics["bytes"] < split["document_bytes"].sum()  # block heads and the dropped tail are not scored
    assert metrics["next_token_accuracy"] == pytest.approx(scores.correct.double().mean().item())
    assert metrics["documents"] == sum(1 for s in share if s)


def test_bytes_are_the_whole_text_when_every_token_is_scored():
    starts, size = np.array([0, 3, 7]), np.array([10, 30])
    assert language.covered_bytes(np.array([3, 4]), starts, size) == 40.0
    assert language.covered_bytes(np.array([2, 2]), starts, size) == pytest.approx(10 * 2 / 3 + 30 * 2 / 4)


def test_document_sums_put_each_target_in_its_document():
    """Documents [0, 3), [3, 10), [10, 12), [12, 20) (each ending in its separator), blocks of 4: the targets are
    positions 1-3, 5-7, 9-11, 13-15 (16-19 dropped). ll = the position, so each sum names its positions."""
    starts = np.array([0, 3, 10, 12, 20])
    ll = (np.arange(16).reshape(4, 4)[:, 1:]).astype(float)
    sums, tokens = language.document_sums(ll, 4, starts)
    assert sums.tolist() == [1 + 2, 3 + 5 + 6 + 7 + 9, 10 + 11, 13 + 14 + 15]  # 2 and 9: separators, own document
    assert tokens.tolist() == [2, 5, 2, 3]
    assert language.target_documents(4, 4, starts)[2].tolist() == [1, 2, 2]


def test_document_sums_refuse_blocks_past_the_stream():
    with pytest.raises(ValueError, match="past the stream's 10 tokens"):
        language.document_sums(np.zeros((3, 3)), 4, np.array([0, 4, 10]))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        language.document_sums(np.zeros((2, 4)), 4, np.array([0, 4, 10]))


def test_a_logits_callable_scores_as_the_model_does_at_any_batch_size(model, split):
    ids = split["input_ids"][:7]

    def logits(batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.int64
        return model(input_ids=torch.from_numpy(batch)).logits.numpy()

    by_model = language.token_log_likelihoods(model, ids, batch_size=3)
    assert torch.equal(language.token_log_likelihoods(logits, ids, batch_size=3), by_model)
    for batch_size in (1, 7, 100):
        assert torch.allclose(language.token_log_likelihoods(model, ids, batch_size), by_model, rtol=0, atol=1e-5)


def test_scoring_restores_the_model_mode(split):
    model = tiny_llama().train()
    language.token_log_likelihoods(model, split["input_ids"][:2], batch_size=2)
    assert model.training


def test_ids_outside_the_logits_are_refused():
    def eight(batch: np.ndarray) -> np.ndarray:
        return np.zeros((*batch.shape, 8), dtype=np.float32)

    assert language.token_log_likelihoods(eight, np.array([[1, 7]]), 1).item() == pytest.approx(-math.log(8))
    with pytest.raises(ValueError, match="token 8, outside the model's 8 logits"):
        language.token_log_likelihoods(eight, np.array([[1, 8]]), batch_size=1)


def _document_sums(ll, split):
    return language.document_sums(ll, BLOCK, split["document_starts"])


def test_the_paired_bootstrap_finds_a_noisier_model_worse(model, split):
    """Noise added to the logits lowers the expected log-likelihood whatever the model (log-sum-exp is convex)."""
    noise = torch.Generator().manual_seed(0)

    def noisy(batch: np.ndarray) -> torch.Tensor:
        logits = model(input_ids=torch.from_numpy(batch)).logits
        return logits + torch.randn(logits.shape, generator=noise)

    ll_reference = language.token_log_likelihoods(model, split["input_ids"], batch_size=8)
    ll_candidate = language.token_log_likelihoods(noisy, split["input_ids"], batch_size=8)
    (reference, tokens), (candidate, _) = _document_sums(ll_reference, split), _document_sums(ll_candidate, split)
    difference = likelihood.paired_document_bootstrap(reference, candidate, tokens, resamples=500, seed=0)
    assert difference.high < 0
    ratio = likelihood.perplexity_ratio(difference)
    perplexity = [language.lm_metrics(ll, ll > 0, split["document_starts"], split["document_bytes"])["perplexity"]
                  for ll in (ll_reference, ll_candidate)]
    assert ratio.estimate == pytest.approx(perplexity[1] / perplexity[0], rel=1e-9)
    assert ratio.low > 1


def test_the_same_model_differs_by_nothing(model, split):
    reference, tokens = _document_sums(language.token_log_likelihoods(model, split["input_ids"], 8), split)
    same, _ = _document_sums(language.token_log_likelihoods(model, split["input_ids"], 8), split)
    difference = likelihood.paired_document_bootstrap(reference, same, tokens, resamples=200)
    assert (difference.estimate, difference.low, difference.high) == (0.0, 0.0, 0.0)
    assert likelihood.perplexity_ratio(difference).estimate == 1.0
