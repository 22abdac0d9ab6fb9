"""Champion vs challenger on one test split, as the promote stage decides it and the audit recomputes it.

One function for both callers, so the audit's numbers are the decision's numbers: both models are
scored through the registry (`tracking.load_predictor`, what is served), and the bootstrap seed is
fixed, so the same versions on the same data give the same p-value and interval to the last digit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from steps import config, tracking
from steps.core import datasets
from steps.serving.contract import Contract
from steps.serving.inputs import caller_rows
from steps.core.stats.classes import ClassDropBound, class_drops_paired
from steps.core.stats.paired import PairedComparison, compare_paired

BOOTSTRAP_SEED = 0
BATCH = 1024


@dataclass(frozen=True)
class ScoredSplit:
    """The test split for scoring registered versions: `raw` as the served model takes it (what a caller
    sends), `normalised` (called only for a version registered before the contract, which takes normalised
    tensors), the labels and the class names."""

    raw: np.ndarray | pd.DataFrame
    normalised: Callable[[], np.ndarray]
    y: np.ndarray
    classes: list[str]


def test_split(root: Path) -> ScoredSplit:
    """The processed test split of the project (or fetched copy) at `root`, ready for served_labels."""
    manifest, contract = datasets.read_manifest(root), datasets.contract(root)
    if contract.texts:
        return text_split(root, contract)
    x, y = datasets.raw_split(root, "test")
    return ScoredSplit(raw=caller_rows(x, contract), y=y, normalised=lambda: datasets.normalise(x, manifest).numpy(),
                       classes=list(contract.classes))


def text_split(root: Path, contract: Contract) -> ScoredSplit:
    """The raw test texts as a caller's table (the contract's text column). No version takes normalised texts."""
    texts, y = datasets.raw_texts(root, "test")

    def normalised():
        raise ValueError("texts have no normalised form: every text model is registered with its contract")

    return ScoredSplit(raw=pd.DataFrame({contract.text_column: texts}), normalised=normalised, y=y,
                       classes=list(contract.classes))


def served_labels(model_name: str, version: int, split: ScoredSplit) -> np.ndarray:
    """Predicted classes of a registered version on `split`, through its pyfunc model (what is served), in
    batches: raw inputs, or normalised tensors for versions registered before the contract (they answer with
    logits), so a new candidate can still be compared with an old champion."""
    model = tracking.load_predictor(model_name, int(version))
    predict = model.predict
    if Contract.from_metadata(model.metadata.metadata) is not None:  # the loaded model says which kind it is
        raw = split.raw
        return np.concatenate([predict(raw[i: i + BATCH])["class_index"].to_numpy()
                               for i in range(0, len(raw), BATCH)])
    x = split.normalised()
    return np.concatenate([np.asarray(predict(x[i: i + BATCH])) for i in range(0, len(x), BATCH)]).argmax(1)


def interval_confidence(cfg: config.PromoteConfig) -> float:
    """Two-sided confidence of the bootstrap interval: 1 - 2 * significance, so that its low end is the
    one-sided bound at the level of the one-sided McNemar test (0.05 -> a 90% interval)."""
    return 1.0 - 2.0 * cfg.significance


def compare(y: np.ndarray, champion: np.ndarray, challenger: np.ndarray, class_names: list[str],
            cfg: config.PromoteConfig) -> PairedComparison:
    return compare_paired(y, champion, challenger, class_names, significance=cfg.significance,
                          non_inferiority_pt=cfg.non_inferiority_pt, confidence=interval_confidence(cfg),
                          resamples=cfg.bootstrap_resamples, seed=BOOTSTRAP_SEED)


def class_confidence(cfg: config.PromoteConfig, classes: int) -> float:
    """Two-sided confidence of each per-class interval: Bonferroni over the classes (1 - 2 * significance / K),
    so that a model no class of which really drops past the limit is refused by noise with probability at most
    `significance` in all, not K times that (10 classes, 10 chances)."""
    return 1.0 - 2.0 * cfg.significance / max(1, classes)


def class_drops(y: np.ndarray, champion: np.ndarray, challenger: np.ndarray, class_names: list[str],
                cfg: config.PromoteConfig) -> list[ClassDropBound]:
    present = len(np.unique(y))
    return class_drops_paired(y, champion, challenger, class_names, class_confidence(cfg, present),
                              cfg.bootstrap_resamples, BOOTSTRAP_SEED)


def statistics(comparison: PairedComparison, worst: ClassDropBound) -> dict:
    """The numbers a decision records (promotion.json, the version's tags, the history) and the audit checks."""
    return {
        "verdict": str(comparison.verdict), "n": comparison.n, "mcnemar_b": comparison.mcnemar.b,
        "mcnemar_c": comparison.mcnemar.c, "p_value": comparison.mcnemar.p_challenger_better,
        "difference_pt": comparison.difference.estimate * 100, "ci_low_pt": comparison.difference.low * 100,
        "ci_high_pt": comparison.difference.high * 100, "ci_confidence": comparison.difference.confidence,
        "champion_accuracy": comparison.champion_accuracy, "challenger_accuracy": comparison.challenger_accuracy,
        "worst_class": worst.name, "worst_class_drop_pt": worst.drop_pt, "worst_class_drop_low_pt": worst.drop_low_pt,
    }

