"""The promotion gates alone (issue 18): per-class drops beyond noise, the teacher's per-class gate, p95 latency."""

from __future__ import annotations

import numpy as np
import pytest

from steps.promote.gates import class_gate, latency_gate, teacher_class_gate
from steps.registry import comparison
from tests.steps.promote.synthetic import CLASSES, policy, predictions


def test_a_one_image_class_drop_on_a_tiny_split_is_not_refused_as_noise():
    cfg = policy(max_class_drop_pt=5.0)
    y, champion, challenger = predictions(200, 1.0, 0)  # 20 images a class: one image is 5 pt
    challenger[np.flatnonzero(y == 7)[0]] = 0
    drops = comparison.class_drops(y, champion, challenger, CLASSES, cfg)
    gate = class_gate("max_class_drop_pt.champion", drops, cfg.max_class_drop_pt, "the champion")
    assert gate.passed and "'class7'" in gate.detail and gate.value > 4



def test_teacher_class_gate_reads_the_reports_recall_and_names_the_class():
    cfg = policy(max_class_drop_pt=5.0)
    teacher = {"accuracy": 0.9, "parameters": 100, "class_recall": {c: 0.9 for c in CLASSES}}
    student = {"accuracy": 0.85, "parameters": 10, "class_recall": {**{c: 0.9 for c in CLASSES}, "class5": 0.4}}
    gate = teacher_class_gate(student, teacher, CLASSES, [1000] * 10, cfg)
    assert not gate.passed and "'class5'" in gate.detail and gate.value == pytest.approx(50)
    old_report = teacher_class_gate({"accuracy": 0.8}, teacher, CLASSES, [1000] * 10, cfg)
    assert not old_report.passed and "rerun the evaluate stage" in old_report.detail



def test_latency_gate_uses_the_p95_interval_and_says_when_it_cannot():
    within = latency_gate({"latency_p95_ms": 1.0, "latency_p95_low_ms": 0.9, "latency_p95_high_ms": 1.1}, 2.0)
    assert within.passed and within.value == 1.1 and "95% CI [0.9, 1.1]" in within.detail
    straddles = latency_gate({"latency_p95_ms": 1.9, "latency_p95_low_ms": 1.8,
                                      "latency_p95_high_ms": 2.3}, 2.0)
    assert not straddles.passed and "inconclusive" in straddles.detail
    few = latency_gate({"latency_p95_ms": 1.0, "latency_p95_high_ms": None, "latency_max_ms": 3.0,
                                "latency_samples": 5}, 2.0)
    assert not few.passed and few.value == 3.0 and "slowest call" in few.detail
