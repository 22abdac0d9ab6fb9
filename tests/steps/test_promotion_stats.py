"""Promotion that survives noise (issue 18): the paired decision, the per-class gates and the p95 latency gate.

Pure: synthetic labels and predictions, the real statistics and the real decision functions (no registry;
tests/registry/test_registry.py runs them against a real MLflow store).
"""

from __future__ import annotations

import numpy as np
import pytest

from steps import config, promote
from steps.core import stats
from steps.registry import comparison
from tests.helpers import default_params

CLASSES = [f"class{k}" for k in range(10)]


def policy(**values) -> config.PromoteConfig:
    return config.PromoteConfig(**{**default_params()["promote"], **values})


def predictions(n: int, champion_right: float, challenger_extra: int, seed: int = 0):
    """Labels, a champion right on a fraction of items, and a challenger fixing `challenger_extra` more items."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    champion = np.where(rng.random(n) < champion_right, y, (y + 1) % 10)
    challenger = champion.copy()
    wrong = np.flatnonzero(champion != y)
    challenger[wrong[:challenger_extra]] = y[wrong[:challenger_extra]]
    return y, champion, challenger


def decide(y, champion, challenger, cfg, candidate_metrics=None, champion_metrics=None) -> promote.Decision:
    result = comparison.compare(y, champion, challenger, CLASSES, cfg)
    drops = comparison.class_drops(y, champion, challenger, CLASSES, cfg)
    incumbent = promote.Incumbent(1, champion_metrics or {}, result, stats.worst_of(drops), drops)
    metrics = {"accuracy": float((challenger == y).mean()), "parameters": 1000, "file_bytes": 4000,
               **(candidate_metrics or {})}
    return promote.judge([], promote.Candidate("m", 2, metrics), incumbent, cfg)


def test_a_tenth_of_a_point_on_a_small_split_is_noise_and_a_clear_win_is_not():
    cfg = policy(non_inferiority_pt=None)
    y, champion, slightly = predictions(2000, 0.85, 2)  # +0.1 pt: 2 more right of 2,000
    noise = decide(y, champion, slightly, cfg)
    assert noise.statistics["difference_pt"] == pytest.approx(0.1)
    assert not noise.promoted and noise.failed_gates == ["beat_champion"]
    assert "did not beat champion v1" in noise.reason and "p >= 0.05" in noise.reason
    assert noise.statistics["p_value"] > 0.05
    _, _, clearly = predictions(2000, 0.85, 60)  # +3 pt
    win = decide(y, champion, clearly, cfg)
    assert win.promoted and win.basis == "better" and win.statistics["p_value"] < 1e-6
    assert win.statistics["ci_low_pt"] > 0 and "as better" in win.reason


def test_non_inferior_takes_the_champion_only_when_smaller_or_faster():
    cfg = policy(non_inferiority_pt=1.0)
    y, champion, same = predictions(4000, 0.9, 0)
    equal = decide(y, champion, same, cfg, champion_metrics={"parameters": 1000, "file_bytes": 4000})
    assert not equal.promoted and "neither smaller nor faster" in equal.reason
    smaller = decide(y, champion, same, cfg, champion_metrics={"parameters": 5000, "file_bytes": 9000})
    assert smaller.promoted and smaller.basis == "non_inferior and smaller: 1,000 vs 5,000 parameters"
    faster = decide(y, champion, same, cfg, candidate_metrics={"latency_p95_high_ms": 1.0},
                    champion_metrics={"parameters": 1000, "file_bytes": 4000, "latency_p95_low_ms": 1.5})
    assert faster.promoted and faster.basis.startswith("non_inferior and faster")


def test_a_challenger_that_breaks_one_class_is_refused_naming_it():
    cfg = policy(max_class_drop_pt=5.0)
    y, champion, challenger = predictions(3000, 0.7, 800)  # clearly better on average ...
    broken = challenger.copy()
    broken[y == 3] = 4  # ... but class3 is never right any more
    decision = decide(y, champion, broken, cfg)
    gate = next(g for g in decision.gates if g.name == "max_class_drop_pt.champion")
    assert decision.statistics["verdict"] == "better"
    assert not decision.promoted and decision.failed_gates == ["max_class_drop_pt.champion"]
    assert "'class3'" in gate.detail and gate.value > 50
    assert decision.statistics["worst_class"] == "class3"
    assert "class3" in decision.reason


def test_a_one_image_class_drop_on_a_tiny_split_is_not_refused_as_noise():
    cfg = policy(max_class_drop_pt=5.0)
    y, champion, challenger = predictions(200, 1.0, 0)  # 20 images a class: one image is 5 pt
    challenger[np.flatnonzero(y == 7)[0]] = 0
    drops = comparison.class_drops(y, champion, challenger, CLASSES, cfg)
    gate = promote.class_gate("max_class_drop_pt.champion", drops, cfg.max_class_drop_pt, "the champion")
    assert gate.passed and "'class7'" in gate.detail and gate.value > 4


def test_teacher_class_gate_reads_the_reports_recall_and_names_the_class():
    cfg = policy(max_class_drop_pt=5.0)
    teacher = {"accuracy": 0.9, "parameters": 100, "class_recall": {c: 0.9 for c in CLASSES}}
    student = {"accuracy": 0.85, "parameters": 10, "class_recall": {**{c: 0.9 for c in CLASSES}, "class5": 0.4}}
    gate = promote.teacher_class_gate(student, teacher, CLASSES, [1000] * 10, cfg)
    assert not gate.passed and "'class5'" in gate.detail and gate.value == pytest.approx(50)
    old_report = promote.teacher_class_gate({"accuracy": 0.8}, teacher, CLASSES, [1000] * 10, cfg)
    assert not old_report.passed and "rerun the evaluate stage" in old_report.detail


def test_latency_gate_uses_the_p95_interval_and_says_when_it_cannot():
    within = promote.latency_gate({"latency_p95_ms": 1.0, "latency_p95_low_ms": 0.9, "latency_p95_high_ms": 1.1}, 2.0)
    assert within.passed and within.value == 1.1 and "95% CI [0.9, 1.1]" in within.detail
    straddles = promote.latency_gate({"latency_p95_ms": 1.9, "latency_p95_low_ms": 1.8,
                                      "latency_p95_high_ms": 2.3}, 2.0)
    assert not straddles.passed and "inconclusive" in straddles.detail
    few = promote.latency_gate({"latency_p95_ms": 1.0, "latency_p95_high_ms": None, "latency_max_ms": 3.0,
                                "latency_samples": 5}, 2.0)
    assert not few.passed and few.value == 3.0 and "slowest call" in few.detail


def test_the_recorded_statistics_are_reproducible_to_the_digit():
    cfg = policy()
    y, champion, challenger = predictions(1500, 0.8, 25, seed=3)
    first = decide(y, champion, challenger, cfg).statistics
    again = decide(y, champion, challenger, cfg).statistics
    assert first == again and first["n"] == 1500 and first["mcnemar_b"] == 0 and first["mcnemar_c"] == 25
    assert first["ci_confidence"] == pytest.approx(0.9)  # 1 - 2 * significance: the one-sided bound at 95%
