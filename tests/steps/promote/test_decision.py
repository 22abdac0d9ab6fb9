"""Promotion that survives noise (issue 18): the decision against the gates and the paired comparison.

Pure: synthetic labels and predictions, the real statistics and the real decision functions (no registry;
tests/registry/test_registry.py runs them against a real MLflow store). The gates alone: test_gates.py.
"""

from __future__ import annotations

import pytest

from steps.promote.decision import Candidate, Decision, Incumbent, decide, judge
from steps.promote.gates import Gate
from steps.registry import comparison
from tests.steps.promote.synthetic import CLASSES, policy, predictions


def against_champion(y, champion, challenger, cfg, candidate_metrics=None, champion_metrics=None) -> Decision:
    incumbent = Incumbent(version=1, metrics=champion_metrics or {},
                          comparison=comparison.compare(y, champion, challenger, CLASSES, cfg),
                          class_drops=comparison.class_drops(y, champion, challenger, CLASSES, cfg))
    metrics = {"accuracy": float((challenger == y).mean()), "parameters": 1000, "file_bytes": 4000,
               **(candidate_metrics or {})}
    return judge([], Candidate(model_name="m", version=2, metrics=metrics), incumbent, cfg)


def test_gates_fail_with_the_gate_named():
    gates = [Gate("min_accuracy", 0.5, 0.9, False), Gate("max_param_ratio", 0.1, 0.2, True)]
    promoted, reason = decide(gates, None, "no champion")
    assert not promoted and "min_accuracy" in reason and "max_param_ratio" not in reason
    assert decide(gates[1:], None, "no champion") == (True, "passed all gates; no champion yet")


def test_a_tenth_of_a_point_on_a_small_split_is_noise_and_a_clear_win_is_not():
    cfg = policy(non_inferiority_pt=None)
    y, champion, slightly = predictions(2000, 0.85, 2)  # +0.1 pt: 2 more right of 2,000
    noise = against_champion(y, champion, slightly, cfg)
    assert noise.statistics["difference_pt"] == pytest.approx(0.1)
    assert not noise.promoted and noise.failed_gates == ["beat_champion"]
    assert "did not beat champion v1" in noise.reason and "p >= 0.05" in noise.reason
    assert noise.statistics["p_value"] > 0.05
    _, _, clearly = predictions(2000, 0.85, 60)  # +3 pt
    win = against_champion(y, champion, clearly, cfg)
    assert win.promoted and win.basis == "better" and win.statistics["p_value"] < 1e-6
    assert win.statistics["ci_low_pt"] > 0 and "as better" in win.reason


def test_non_inferior_takes_the_champion_only_when_smaller_or_faster():
    cfg = policy(non_inferiority_pt=1.0)
    y, champion, same = predictions(4000, 0.9, 0)
    equal = against_champion(y, champion, same, cfg, champion_metrics={"parameters": 1000, "file_bytes": 4000})
    assert not equal.promoted and "neither smaller nor faster" in equal.reason
    smaller = against_champion(y, champion, same, cfg, champion_metrics={"parameters": 5000, "file_bytes": 9000})
    assert smaller.promoted and smaller.basis == "non_inferior and smaller: 1,000 vs 5,000 parameters"
    faster = against_champion(y, champion, same, cfg, candidate_metrics={"latency_p95_high_ms": 1.0},
                    champion_metrics={"parameters": 1000, "file_bytes": 4000, "latency_p95_low_ms": 1.5})
    assert faster.promoted and faster.basis.startswith("non_inferior and faster")


def test_a_challenger_that_breaks_one_class_is_refused_naming_it():
    cfg = policy(max_class_drop_pt=5.0)
    y, champion, challenger = predictions(3000, 0.7, 800)  # clearly better on average ...
    broken = challenger.copy()
    broken[y == 3] = 4  # ... but class3 is never right any more
    decision = against_champion(y, champion, broken, cfg)
    gate = next(g for g in decision.gates if g.name == "max_class_drop_pt.champion")
    assert decision.statistics["verdict"] == "better"
    assert not decision.promoted and decision.failed_gates == ["max_class_drop_pt.champion"]
    assert "'class3'" in gate.detail and gate.value > 50
    assert decision.statistics["worst_class"] == "class3"
    assert "class3" in decision.reason


def test_the_recorded_statistics_are_reproducible_to_the_digit():
    cfg = policy()
    y, champion, challenger = predictions(1500, 0.8, 25, seed=3)
    first = against_champion(y, champion, challenger, cfg).statistics
    again = against_champion(y, champion, challenger, cfg).statistics
    assert first == again and first["n"] == 1500 and first["mcnemar_b"] == 0 and first["mcnemar_c"] == 25
    assert first["ci_confidence"] == pytest.approx(0.9)  # 1 - 2 * significance: the one-sided bound at 95%


def test_promotion_json_keeps_its_keys():
    """metrics/promotion.json is read by the flow, the CLI's report and people's scripts: same keys as before."""
    y, champion, same = predictions(500, 0.8, 0)  # a tie: no evidence, so @challenger
    decision = against_champion(y, champion, same, policy())
    written = decision.to_dict()
    assert set(written) == {"model_name", "version", "promoted", "alias", "reason", "accuracy", "gates",
                            "incumbent_version", "incumbent_accuracy", "failed_gates", "basis", "statistics",
                            "summary"}
    assert (written["version"], written["incumbent_version"], written["alias"]) == (2, 1, "challenger")
    assert set(written["gates"][0]) == {"name", "value", "threshold", "passed", "detail"}
