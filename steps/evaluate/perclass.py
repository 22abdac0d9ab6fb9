"""Recall per class, named by the manifest's class names: the evaluation table's per-class view.

A model that wins on average can still break one class; the evaluate stage records each model's
recall per class in metrics/report.json (models.<role>.class_recall) and logs this table to MLflow,
and the promote stage's per-class gate against the teacher reads it from there.
"""

from __future__ import annotations

import math

import pandas as pd

from steps.compression.training import Split, predict_logits
from steps.core.stats.classes import per_class_recall


def class_recall(model, split: Split, class_names: list[str]) -> dict[str, float | None]:
    """{class name: recall on `split`}; None for a class absent from it (JSON has no NaN)."""
    predicted = predict_logits(model, split.x).argmax(1).numpy()
    recall = per_class_recall(split.y.numpy(), predicted, len(class_names))
    return {name: (None if math.isnan(r) else float(r)) for name, r in zip(class_names, recall, strict=True)}


def recall_frame(models: dict[str, dict]) -> pd.DataFrame:
    """One row per class, one column per model that has class_recall (recall in %), plus the row 'all' (accuracy)."""
    columns = {name: m["class_recall"] for name, m in models.items() if "class_recall" in m}
    data = pd.DataFrame({name: {c: (None if r is None else r * 100) for c, r in recall.items()}
                         for name, recall in columns.items()})
    data.loc["all"] = [models[name]["accuracy"] * 100 for name in columns]
    data.index.name = "class"
    return data
