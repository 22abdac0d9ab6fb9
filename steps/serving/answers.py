"""Logits -> the answer a caller reads: the class name, its index and one probability per class name."""

from __future__ import annotations

import numpy as np
import pandas as pd

OUTPUTS = ("labels", "logits")
"""params={"output": ...}: labels (label, class_index, a probability per class) or the raw logits per class."""


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def answer(logits: np.ndarray, classes: tuple[str, ...], output: str = "labels") -> pd.DataFrame:
    """One row per input: `label`, `class_index` and a probability column per class name; or, with
    output "logits", a logit column per class name."""
    if output == "logits":
        return pd.DataFrame(logits.astype(np.float64), columns=list(classes))
    index = logits.argmax(axis=1)
    # one dict of columns: half the time of building the probabilities' frame and concatenating
    columns = {"label": np.asarray(classes, dtype=object)[index], "class_index": index.astype(np.int64)}
    columns.update(zip(classes, softmax(logits).T))
    return pd.DataFrame(columns)
