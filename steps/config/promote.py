"""params.yaml `promote:`: the registered model's name and the gates a candidate must pass."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from steps.config.base import Section as _Section

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""What a registered model name may be: MLflow refuses '/' and ':', and the name is also part of the
registry lock's file name (steps/registry/lock.py), so letters, digits, '_', '.', '-' only."""
MODEL_SUFFIX = "-student"
_DATASET_CHARS = 100  # room for the suffix and the lock file's name in the 255 bytes a file name may have


def default_model_name(dataset: str) -> str:
    """`<dataset>-student`, sanitised to MODEL_NAME_PATTERN: accents dropped, lower case, every run of other
    characters one '-' ("Fashion MNIST (v2)" -> "fashion-mnist-v2-student"); "data-student" when nothing
    of the name is left."""
    ascii_name = unicodedata.normalize("NFKD", dataset).encode("ascii", "ignore").decode().lower()
    stem = re.sub(r"[^a-z0-9_.-]+", "-", ascii_name)
    stem = re.sub(r"[-_.]*-[-_.]*", "-", stem)  # no "-.-" or "--" between the words
    stem = re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", stem[:_DATASET_CHARS])
    return f"{stem or 'data'}{MODEL_SUFFIX}"


class PromoteConfig(_Section):
    model_name: str | None = Field(
        default=None, min_length=1, pattern=MODEL_NAME_PATTERN,
        description="the registered model; null: <dataset>-student from the data manifest (resolved_model_name)")
    replace_contract: bool = Field(
        default=False, description="register a candidate whose input contract (input kind and shape, feature names, "
        "class names) differs from the champion's, starting a new line on purpose; otherwise it is refused")
    min_accuracy: float = Field(ge=0, le=1)
    max_accuracy_drop: float = Field(ge=0, le=1, description="vs the teacher, in accuracy points/100")
    max_param_ratio: float = Field(gt=0, le=1, description="student params / teacher params")
    max_size_ratio: float | None = Field(default=None, gt=0, le=1,
                                         description="student file bytes / teacher file bytes; null: no gate")
    max_latency_p95_ms: float | None = Field(
        default=None, gt=0, description="the upper end of the student's p95 latency interval (metrics/report.json) "
                                        "must lie within this; null: no gate")
    significance: float = Field(default=0.05, gt=0, lt=0.5, description="the challenger takes @champion as better "
                                "only at one-sided McNemar p below this and a bootstrap interval above 0")
    non_inferiority_pt: float | None = Field(
        default=None, ge=0, le=100, description="or when its accuracy is not worse than the champion's by more than "
                                                "this (pt, the interval's low end) and it is smaller or faster; null: never")
    max_class_drop_pt: float | None = Field(
        default=None, gt=0, le=100, description="no class's test recall may fall by more than this (pt) against the "
                                                "champion or the teacher; null: no gate")
    max_perplexity_ratio: float = Field(default=1.25, ge=1, description="causal_lm: the deployable file's test "
                                        "perplexity over the teacher's (it replaces the accuracy gates)")
    perplexity_margin: float = Field(default=0.02, ge=0, lt=1, description="causal_lm: against the champion, "
                                     "non-inferior when the upper end of the perplexity ratio's interval is at most "
                                     "1 + this (and the candidate is smaller); better when it is below 1")
    bootstrap_resamples: int = Field(default=2000, ge=1000, description="paired bootstrap of the accuracy difference")
    lock_timeout_s: float = Field(default=600, gt=0, description="how long a promotion waits for a concurrent one")

    def resolved_model_name(self, manifest: Mapping[str, Any]) -> str:
        """The registered model's name, for every reader of it: `model_name` when set, else the default that
        `default_model_name` derives from the data manifest's `dataset` (data/processed/manifest.json), so a
        project on other data registers its own model rather than a new version of another task's."""
        if self.model_name is not None:
            return self.model_name
        dataset = manifest.get("dataset")
        if not isinstance(dataset, str):
            raise ValueError(f"the data manifest has no dataset name (key 'dataset', got {dataset!r}) to name the "
                             "registered model after; set promote.model_name or rerun the data stage")
        return default_model_name(dataset)
