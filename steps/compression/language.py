"""A causal language model scored on a causal_lm split's blocks: each target's log-likelihood, summed per document,
and the split's perplexity, bits per byte and next-token accuracy.

The blocks are steps/sources/blocks.py's: documents end to end, each followed by one separator, cut into rows of
block_size; block i's token j sits at stream position i * block_size + j. Within a block token j + 1 is predicted
from tokens <= j and no prediction crosses blocks (nanoGPT's and the Hugging Face run_clm evaluation), so a block
gives block_size - 1 targets and each block's first token is context only.

The model is either a PyTorch causal LM (its forward's `.logits`) or any callable `logits(ids) -> (B, T, V)` taking
int64 numpy ids (an ONNX Runtime session's run), so the exported file is scored by the same code as the checkpoint.
Logits (B, T, V) are the large array here (a 50k vocabulary makes 200 kB per token in float32): each batch is
reduced to its targets' log-likelihoods before the next, never held whole.

Candidate against reference (the paired gate): steps/core/stats/likelihood.py takes document_sums' arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from steps.compression.training import evaluating

Logits = Callable[[np.ndarray], torch.Tensor | np.ndarray]
"""int64 ids (B, T) -> logits (B, T, V), a tensor or an array."""


@dataclass(frozen=True)
class TokenScores:
    """Per predicted target (N, T - 1): its log-likelihood (float64, nats) and whether the argmax was it."""

    log_likelihood: torch.Tensor
    correct: torch.Tensor


def token_scores(model: nn.Module | Logits, input_ids, batch_size: int) -> TokenScores:
    """Each block's targets (tokens 1..T-1) scored from the logits at the position before: log p(target) in float64
    (log_softmax in float64, so a sum over a million tokens loses nothing to float32) and argmax == target.

    `model`: an nn.Module (called as model(input_ids=...).logits in eval mode under inference_mode, its mode
    restored) or a Logits callable. `input_ids`: (N, T) integer array or tensor, T >= 2."""
    ids = _checked_ids(input_ids)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    logits = _module_logits(model) if isinstance(model, nn.Module) else model
    lls, hits = [], []
    context = evaluating(model) if isinstance(model, nn.Module) else torch.inference_mode()
    with context:
        for start in range(0, len(ids), batch_size):
            batch = ids[start:start + batch_size]
            ll, hit = _scored(torch.as_tensor(logits(batch)), batch)
            lls.append(ll.cpu())
            hits.append(hit.cpu())
    return TokenScores(torch.cat(lls), torch.cat(hits))


def token_log_likelihoods(model: nn.Module | Logits, input_ids, batch_size: int) -> torch.Tensor:
    """(N, T - 1) float64 log p(target): token_scores' log-likelihoods alone."""
    return token_scores(model, input_ids, batch_size).log_likelihood


def target_documents(blocks: int, block_size: int, document_starts) -> np.ndarray:
    """(blocks, block_size - 1): the document of each predicted target, from its stream position. A document's
    tokens run from starts[d] to starts[d + 1] - 1, the last of them its separator, which so counts to it."""
    starts = _checked_starts(document_starts)
    positions = np.arange(blocks, dtype=np.int64)[:, None] * block_size + np.arange(1, block_size, dtype=np.int64)
    if blocks and positions[-1, -1] >= starts[-1]:
        raise ValueError(f"{blocks} blocks of {block_size} tokens reach stream position {positions[-1, -1]}, past "
                         f"the stream's {starts[-1]} tokens (document_starts[-1]): arrays from different splits")
    return np.searchsorted(starts, positions, side="right") - 1


def document_sums(ll, block_size: int, document_starts) -> tuple[np.ndarray, np.ndarray]:
    """(sum of log-likelihoods per document (D,) float64, predicted targets per document (D,) int64). A document
    no block predicts into (the dropped tail's, or one wholly inside blocks' first tokens) has 0 and 0."""
    ll = _as_numpy(ll, np.float64)
    if ll.ndim != 2 or ll.shape[1] != block_size - 1:
        raise ValueError(f"ll must be (blocks, block_size - 1) = (N, {block_size - 1}), got shape {ll.shape}")
    docs = target_documents(len(ll), block_size, document_starts).ravel()
    count = len(document_starts) - 1
    sums = np.bincount(docs, weights=ll.ravel(), minlength=count)
    return sums, np.bincount(docs, minlength=count).astype(np.int64)


def covered_bytes(tokens: np.ndarray, document_starts, document_bytes) -> float:
    """The bytes the predicted targets stand for: each document's UTF-8 bytes times the share of its tokens
    (separator included) that are predicted targets.

    Why not the split's total bytes: the first token of every block is never a target and the tail past the last
    full block is dropped, so the targets cover less than the whole text, and dividing their bits by all of it
    flatters the model by that share (T / (T - 1) and more). Why not only the documents wholly covered: with
    packed blocks few are (any document holding a block's first token is not), and dropping the rest drops
    their tokens too. Per document rather than one split-wide share, because the missing tokens are not spread
    evenly (the dropped tail is the last documents'). When every token is a target this is exactly the bytes of
    the text; the separator's prediction is charged to its document, as an end-of-text cost, with no bytes."""
    starts, size = _checked_starts(document_starts), _as_numpy(document_bytes, np.float64)
    lengths = np.diff(starts)
    if size.shape != lengths.shape:
        raise ValueError(f"document_bytes has {size.shape} entries for {len(lengths)} documents "
                         f"(document_starts has {len(starts)})")
    return float(np.sum(size * np.asarray(tokens) / lengths))


def lm_metrics(ll, next_token_correct, document_starts, document_bytes) -> dict[str, float | int]:
    """The split's language-model metrics from token_scores' arrays (block_size is ll's width + 1):

    tokens (predicted targets), loss (mean negative log-likelihood, nats), perplexity (exp(loss)),
    bits_per_byte (-sum ll / ln 2 over covered_bytes), bytes (covered_bytes), next_token_accuracy,
    documents (documents with at least one target)."""
    ll, correct = _as_numpy(ll, np.float64), _as_numpy(next_token_correct, bool)
    if ll.shape != correct.shape or ll.ndim != 2 or ll.size == 0:
        raise ValueError(f"ll and next_token_correct must be the same non-empty (N, T - 1) shape, got {ll.shape} "
                         f"and {correct.shape}")
    _, tokens = document_sums(ll, ll.shape[1] + 1, document_starts)
    size = covered_bytes(tokens, document_starts, document_bytes)
    loss = -float(ll.mean())
    return {"tokens": int(ll.size), "loss": loss, "perplexity": math.exp(loss),
            "bits_per_byte": -float(ll.sum()) / math.log(2) / size if size > 0 else math.nan, "bytes": size,
            "next_token_accuracy": float(correct.mean()), "documents": int(np.count_nonzero(tokens))}


def _module_logits(model: nn.Module) -> Logits:
    device = next(model.parameters()).device

    def logits(ids: np.ndarray) -> torch.Tensor:
        return model(input_ids=torch.from_numpy(ids).to(device)).logits

    return logits


def _scored(logits: torch.Tensor, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's (log p(target), argmax == target), its logits (B, T, V) reduced to (B, T - 1)."""
    if logits.ndim != 3 or logits.shape[:2] != ids.shape:
        raise ValueError(f"logits for ids of shape {tuple(ids.shape)} must be (B, T, V), got {tuple(logits.shape)}")
    if int(ids.max()) >= logits.shape[2]:
        raise ValueError(f"input_ids hold token {int(ids.max())}, outside the model's {logits.shape[2]} logits")
    scores = logits[:, :-1]
    targets = torch.from_numpy(ids[:, 1:]).to(scores.device).unsqueeze(-1)
    # the normaliser in the logits' own precision (a float64 copy of every vocabulary entry would double the
    # batch's memory), the difference in float64
    ll = scores.gather(-1, targets).squeeze(-1).double() - torch.logsumexp(scores, dim=-1).double()
    return ll, scores.argmax(-1) == targets.squeeze(-1)


def _checked_ids(input_ids) -> np.ndarray:
    ids = _as_numpy(input_ids, None)
    if not np.issubdtype(ids.dtype, np.integer) or ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] < 2:
        raise ValueError(f"input_ids must be integer blocks (N >= 1, block_size >= 2), got shape {ids.shape} "
                         f"dtype {ids.dtype}")
    if ids.min() < 0:
        raise ValueError(f"input_ids hold a negative token id ({ids.min()})")
    return np.ascontiguousarray(ids, dtype=np.int64)


def _checked_starts(document_starts) -> np.ndarray:
    starts = _as_numpy(document_starts, np.int64)
    if starts.ndim != 1 or len(starts) < 2 or starts[0] != 0 or np.any(np.diff(starts) <= 0):
        raise ValueError(f"document_starts must run from 0 up strictly (D + 1 entries, D >= 1), got "
                         f"{starts[:5].tolist()}{'...' if len(starts) > 5 else ''} of shape {starts.shape}")
    return starts


def _as_numpy(a, dtype) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


@dataclass(frozen=True)
class SplitScores:
    """A model on a split's blocks: its metrics (lm_metrics), and each document's summed log-likelihood and
    predicted tokens (the paired gate's unit: stats/likelihood.py)."""

    metrics: dict[str, float | int]
    document_ll: np.ndarray
    document_tokens: np.ndarray


SCORING_BATCH = 8
"""Blocks per forward pass when the stages score a split (each batch's logits are blocks x length x vocabulary)."""


def score_split(model: nn.Module | Logits, blocks: dict[str, np.ndarray], batch_size: int = SCORING_BATCH,
                limit: int | None = None) -> SplitScores:
    """`model` (a transformers causal LM, or a logits callable such as an ONNX Runtime session's) on the first
    `limit` blocks (all when None) of a split's arrays (datasets.load_blocks)."""
    ids = blocks["input_ids"][:limit]
    scores = token_scores(model, ids, batch_size)
    sums, tokens = document_sums(scores.log_likelihood, ids.shape[1], blocks["document_starts"])
    metrics = lm_metrics(scores.log_likelihood, scores.correct, blocks["document_starts"], blocks["document_bytes"])
    return SplitScores(metrics, sums, tokens)
