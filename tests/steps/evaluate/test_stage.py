"""The evaluate stage: every model measured side by side, eager and ONNX Runtime, and the deployable variants."""

import json

from steps import evaluate
from steps.core.layout import REPORT


def test_evaluate_compares_all_three(project_after, stage_params):
    root = project_after("quantize")
    report = evaluate.run(stage_params, root)
    assert set(report.models) == {"teacher", "pruned", "student"}
    for m in report.models.values():  # eager and ONNX Runtime side by side, batch 1 and the large batch
        assert set(m["latency"]) == {"eager", "onnxruntime"}
        assert all(set(by_batch) == {"batch_1", "batch_16"} for by_batch in m["latency"].values())
        assert m["latency_p50_ms"] == m["latency"]["onnxruntime"]["batch_16"]["p50"]  # the default backend
    assert set(report.deploy["variants"]) == {"fp32", "dynamic", "static"}
    pruned, teacher_m = report.models["pruned"], report.models["teacher"]
    assert pruned["nonzeros"] < teacher_m["nonzeros"] == teacher_m["parameters"]
    assert pruned["compressed_bytes"] < teacher_m["compressed_bytes"]
    assert json.loads((root / REPORT).read_text())["models"]["student"]["accuracy"] > 0.1
    assert (root / "plots/pareto.png").stat().st_size > 0
