"""The evaluate stage's per-class table (issue 18; class names from the manifest, issue 16)."""

from __future__ import annotations

import json

from steps import tracking
from steps.core.datasets import read_manifest
from steps.core.layout import REPORT
from steps.core.names import ModelRole


def test_report_has_recall_per_named_class_and_logs_the_table(project_after):
    root = project_after("evaluate")
    report = json.loads((root / REPORT).read_text())
    classes = read_manifest(root)["classes"]
    for role in ModelRole:
        recall = report["models"][role]["class_recall"]
        assert sorted(recall) == sorted(classes) and all(0 <= r <= 1 for r in recall.values())
        # 3 windows of 3 repeats in the tiny params: too few calls for a p95 interval, so none is claimed and the
        # slowest call is kept
        m = report["models"][role]
        assert m["latency_p95_high_ms"] is None and m["latency_max_ms"] >= m["latency_p95_ms"] > 0
        assert m["latency_samples"] == 3 * 3
    tracking.use_store(root)
    table = tracking.download_artifacts(tracking.run_artifact_uri(report["mlflow_run_id"], "per_class_recall.json"),
                                        root / "downloaded")
    logged = json.loads(table.read_text())
    assert set(logged["columns"]) == {"class", *[r.value for r in ModelRole]}
    assert sorted(row[0] for row in logged["data"]) == sorted([*classes, "all"])
