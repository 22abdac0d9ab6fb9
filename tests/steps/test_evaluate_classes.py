"""The evaluate stage's per-class table and p95 intervals (issue 18; class names from the manifest, issue 16)."""

from __future__ import annotations

import json

import numpy as np

from steps import tracking
from steps.core.datasets import read_manifest
from steps.core.layout import REPORT
from steps.core.measurement import with_p95_interval
from steps.core.names import ModelRole


def test_report_has_recall_per_named_class_and_logs_the_table(project_after):
    root = project_after("evaluate")
    report = json.loads((root / REPORT).read_text())
    classes = read_manifest(root)["classes"]
    for role in ModelRole:
        recall = report["models"][role]["class_recall"]
        assert sorted(recall) == sorted(classes) and all(0 <= r <= 1 for r in recall.values())
        # 3 repeats in the tiny params: too few for a p95 interval, so none is claimed and the slowest call is kept
        m = report["models"][role]
        assert m["latency_p95_high_ms"] is None and m["latency_max_ms"] >= m["latency_p95_ms"] > 0
        assert m["latency_samples"] == 3
    tracking.use_store(root)
    table = tracking.download_artifacts(tracking.run_artifact_uri(report["mlflow_run_id"], "per_class_recall.json"),
                                        root / "downloaded")
    logged = json.loads(table.read_text())
    assert set(logged["columns"]) == {"class", *[r.value for r in ModelRole]}
    assert sorted(row[0] for row in logged["data"]) == sorted([*classes, "all"])


def test_p95_interval_appears_from_72_samples_and_covers_the_estimate():
    rng = np.random.default_rng(0)
    samples = list(rng.gamma(4.0, 0.25, 120))
    timed = with_p95_interval({"p50": 1.0, "p95": float(np.quantile(samples, 0.95)), "max": max(samples),
                               "n": 120, "samples": samples})
    assert "samples" not in timed and timed["p95_low"] <= timed["p95"] <= timed["p95_high"] < timed["max"]
    few = with_p95_interval({"p50": 1.0, "p95": 2.0, "max": 2.5, "n": 71, "samples": samples[:71]})
    assert few["p95_low"] is None and few["p95_high"] is None
