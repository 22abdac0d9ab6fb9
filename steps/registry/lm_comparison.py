"""A language model's champion scored beside a candidate on today's test documents, paired by document.

The champion's registered folder (checked against its sha256 tag when downloaded) is scored on the data stage's
test blocks as evaluate scored the candidate (steps/compression/language.py); the two are paired by document in a
bootstrap of the per-token log-likelihood difference (steps/core/stats/likelihood.py), whose exponential is the
perplexity ratio. Promote decides on it; the audit recomputes it. The caller has checked that the champion reads
the data's token ids (its tokenizer's sha256).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from steps import tracking
from steps.compression import language
from steps.core import datasets
from steps.core.stats import likelihood

SEED = 0
"""The bootstrap's seed: promote and the audit draw the same resamples."""


def champion_comparison(root: Path, candidate_documents: list[float], name: str, version: int,
                        resamples: int) -> dict:
    """The perplexity ratio candidate / champion `version` of `name` on the test documents of the project at `root`,
    with its interval; `candidate_documents`: the candidate's summed log-likelihood per test document (the
    evaluate report's)."""
    from transformers import AutoModelForCausalLM

    blocks = datasets.load_blocks(root, "test", datasets.read_manifest(root))
    with tempfile.TemporaryDirectory(prefix="shrinkflow-champion-") as scratch:
        _, folder = tracking.download_model_files(f"models:/{name}/{version}", Path(scratch))
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()
        scores = language.score_split(model, blocks)
    difference = likelihood.paired_document_bootstrap(scores.document_ll, np.asarray(candidate_documents),
                                                      scores.document_tokens, resamples=resamples, seed=SEED)
    ratio = likelihood.perplexity_ratio(difference)
    return {"champion_version": version, "champion_perplexity": scores.metrics["perplexity"],
            "champion_next_token_accuracy": scores.metrics["next_token_accuracy"],
            "perplexity_ratio": ratio.estimate, "perplexity_ratio_low": ratio.low, "perplexity_ratio_high": ratio.high,
            "nats_per_token": difference.estimate, "documents": int(np.count_nonzero(scores.document_tokens))}
