"""The budget search (params `target:`) as the prune stage runs it, and what the later stages do with its choice."""

import json
import logging

import onnx
import pytest
from mlflow.tracking import MlflowClient

from steps import config, distill, evaluate, export, promote, prune, quantize, tracking
from steps.compression import measure, progress, width_search
from steps.core import latency
from steps.core.layout import model_path, onnx_path
from steps.core.datasets import read_manifest
from steps.core.hashing import sha256
from steps.core.names import ModelRole, Tag
from steps.core.torchkit import load_model
from steps.promote.gates import budget_gates
from steps.registry.audit.remeasure import budget_check
from steps.prune import budget_search as search
from steps.prune.search_cache import SearchCache
from tests.helpers import variant

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = {"precisions": ["fp32"], "candidates": 1, "search_repeats": 72, "verify_repeats": 72, "warmup": 2,
         "search_seconds": 0, "verify_seconds": 0,
         "widths": [0.75, 0.5, 0.25]}


def with_target(params, **limits):
    search_opts = {**QUICK, **limits.pop("search", {})}
    return variant(params, target={**limits, "search": search_opts})


def teacher_parameters(root) -> int:
    return measure.parameters(load_model(root, ModelRole.TEACHER)[0])


def test_the_search_meets_a_parameter_budget_that_a_fixed_setting_misses(project_after, stage_params, caplog):
    root = project_after("teacher")
    limit = int(teacher_parameters(root) * 0.35)
    fixed = prune.run(variant(stage_params, prune={"method": "structured", "target_sparsity": 0.3}), root)
    assert fixed.parameters > limit  # the hand-set 30% of channels is too big for this budget
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=progress.LOGGER_NAME):
        result = prune.run(with_target(stage_params, parameters=limit), root)
    pruned, _ = load_model(root, ModelRole.PRUNED)
    assert result.method == "search"
    assert measure.parameters(pruned) == result.parameters == result.search["chosen"]["parameters"] <= limit
    assert result.search["chosen"]["fits"] and result.search["budget"]["parameters"] == limit
    assert any(not p["fits"] for p in result.search["frontier"])  # the full widths, at least, did not fit
    # the hand-set baseline is verified beside the walk's candidate: the widest uniform cut that fits
    uniform = [c for c in result.search["candidates"] if c["origin"] == "uniform"]
    assert len(uniform) == 1 and {c["origin"] for c in result.search["candidates"]} == {"greedy", "uniform"}
    round_to = stage_params.prune.round_to
    layers = width_search.layers_of(load_model(root, ModelRole.TEACHER)[0], QUICK["widths"], round_to)
    assert tuple(uniform[0]["widths"].values()) in width_search.uniform(layers, QUICK["widths"], round_to)
    # what a person saw meanwhile: the sensitivity, the settings measured, each candidate's epochs and verdict
    lines = [r.getMessage() for r in caplog.records if r.name == progress.LOGGER_NAME]
    assert lines[0].startswith("budget search: sensitivity, layers ")
    assert lines[1].startswith(f"budget search: fp32 settings measured, settings {len(result.search['frontier'])}")
    for i, candidate in enumerate(result.search["candidates"], start=1):
        assert f"search candidate {i}/2 (fp32): epoch 1/1, train_loss " in " ".join(lines)
        verdict = [line for line in lines if line.startswith(f"budget search: candidate {i}/2, fp32: p95 ")]
        assert len(verdict) == 1 and f"val_accuracy {candidate['val_accuracy']:.4f}, fits yes" in verdict[0]


def test_an_impossible_budget_is_refused_saying_how_close_the_best_came(project_after, stage_params):
    root = project_after("teacher")
    over = r"parameters \d+ > 9 \(10 less the 10% margin\).*narrowest widths"
    with pytest.raises(search.BudgetUnreachable, match=over) as err:
        prune.run(with_target(stage_params, parameters=10), root)
    assert "features.0" in str(err.value)  # the closest setting's widths are named
    assert not (root / model_path(ModelRole.PRUNED)).exists()  # nothing was saved to promote


def test_sensitivity_is_deterministic_and_both_tables_are_cached(project_after, stage_params):
    root = project_after("teacher")
    params = with_target(stage_params, parameters=int(teacher_parameters(root) * 0.5))
    first = prune.run(params, root).search
    cache = SearchCache(root)
    measured = dict(cache.costs)
    sensitivity_files = sorted(cache.folder.glob("sensitivity-*.json"))
    assert len(sensitivity_files) == 1 and measured
    again = prune.run(params, root).search
    assert SearchCache(root).costs == measured  # every setting came from the cache: nothing re-timed
    assert again["frontier"] == first["frontier"]
    for path in sensitivity_files:
        path.unlink()
    recomputed = prune.run(params, root).search
    assert recomputed["sensitivity"] == first["sensitivity"]
    assert json.loads(sensitivity_files[0].read_text())["table"] == first["sensitivity"]


def test_a_latency_budget_is_refused_only_on_this_runs_timings_not_on_cached_ones(project_after, stage_params):
    root = project_after("teacher")
    prune.run(with_target(stage_params, parameters=int(teacher_parameters(root) * 0.35)), root)  # times full..narrowest
    costs_file = SearchCache(root).folder / "costs.json"
    slow = {key: {**cost, **{k: cost[k] * 1e6 for k in ("latency_p95_ms", "latency_p95_low_ms", "latency_p95_high_ms")}}
            for key, cost in json.loads(costs_file.read_text()).items()}  # as if timed on a far slower day
    costs_file.write_text(json.dumps(slow))
    # every setting fits 1000 ms; by the cached timings not even the narrowest does, so the walk stops at once
    chosen = prune.run(with_target(stage_params, latency_p95_ms=1000.0), root).search["chosen"]
    assert chosen["fits"] and chosen["latency_p95_high_ms"] < 1000  # timed again instead of refused
    assert all(cost["latency_p95_ms"] < 1000 for cost in json.loads(costs_file.read_text()).values())


def test_the_chosen_precision_is_deployed_gated_on_the_budget_and_recorded_on_the_version(project_after,
                                                                                            stage_params):
    root = project_after("export")
    params = with_target(stage_params, latency_p95_ms=1000.0, search={"precisions": ["dynamic"]})
    for stage in (prune, distill, export):
        stage.run(params, root)
    assert load_model(root, ModelRole.STUDENT)[0].features[0].out_channels == \
        load_model(root, ModelRole.PRUNED)[0].features[0].out_channels  # the searched model is the student
    assert quantize.run(params, root).deploy == "dynamic"  # quantize.methods is [] in the tiny params
    report = evaluate.run(params, root)
    assert report.target["measured"]["precision"] == "dynamic" and report.target["violations"] == []
    decision = promote.run(params, root)
    gates = {g.name: g for g in decision.gates}
    assert gates["target.latency_p95_ms"].passed and "max_param_ratio" not in gates  # the budget replaces the knob
    assert gates["target.latency_p95_ms"].value == report.target["measured"]["latency_p95_high_ms"]
    tracking.use_store(root)
    tags = MlflowClient().get_model_version(params.promote.model_name, str(decision.version)).tags
    assert tags[f"{Tag.TARGET}.latency_p95_ms"] == "1000" and tags[f"{Tag.TARGET}.batch_size"] == "1"


def test_a_relative_budget_is_searched_verified_and_gated_beside_the_teachers_file(project_after, stage_params):
    root = project_after("export")
    params = one_ort_thread(with_target(stage_params, speedup=0.05))  # tiny models: call overheads decide their speed
    chosen = prune.run(params, root).search["chosen"]
    windows = params.target.search.verify_windows
    assert chosen["fits"] and chosen["windows"] == windows and chosen["speedup_low"] >= 0.05
    # the search timed the teacher as the export stage writes it (raw inputs in): the same graph
    (reference,) = SearchCache(root).folder.glob("reference-*.onnx")
    assert op_types(reference) == op_types(root / onnx_path(ModelRole.TEACHER))
    assert [op for op in op_types(reference) if op != "Constant"][:3] == ["Div", "Sub", "Div"]
    for stage in (distill, export, quantize):
        stage.run(params, root)
    report = evaluate.run(params, root)
    measured = report.target["measured"]
    assert report.target["verdicts"] == {"speedup": "pass"} and measured["windows"] == windows
    assert len(measured["reference_window_p95_ms"]) == windows  # the teacher timed in the same windows
    assert measured["machine_vs_search"] == measured["reference_p95_ms"] / chosen["reference_p95_ms"]
    decision = promote.run(params, root)
    gate = {g.name: g for g in decision.gates}["target.speedup"]
    assert gate.passed and gate.value == measured["speedup_low"]
    # the audit re-times the registered deployable beside the teacher's file logged with the version
    name = params.promote.resolved_model_name(read_manifest(root))
    tags = tracking.model_version(name, decision.version).tags
    assert tags[Tag.REFERENCE_SHA256] == sha256(root / onnx_path(ModelRole.TEACHER))
    (row,) = budget_check(name, decision.version, tags, root)
    assert row.name == "budget speedup" and row.passed and row.observed.startswith("pass ")
    assert row.recorded.startswith("pass") and f"{windows} windows" in row.detail and "x the teacher [" in row.detail
    low, high = (float(end) for end in row.observed.split("[")[1].rstrip("]").split(", "))
    assert latency.verdict(low, high, 0.05, at_least=True) == latency.PASS  # judged by the interval it re-timed
    older = {k: v for k, v in tags.items() if k != Tag.REFERENCE_SHA256}  # as registered before issue 29
    assert budget_check(name, decision.version, older, root)[0].passed is None


def test_a_relative_budget_no_model_can_meet_is_refused_naming_the_speedup(project_after, stage_params):
    root = project_after("teacher")
    with pytest.raises(search.BudgetUnreachable, match=r"speedup [\d.]+ < 1100 \(1000 plus the 10% margin\)"):
        prune.run(with_target(stage_params, speedup=1000.0), root)


def one_ort_thread(params):
    """`params` timing ONNX Runtime on one thread. With params.threads 2 on a 2-core machine that another process
    (the other xdist worker) keeps busy, every parallel section waits for whichever thread lost its core
    (steps/core/latency.py): here, 40 re-timings of a tiny CNN beside another gave speedup intervals a median 0.21
    wide, down to a lower end of 0.26, and CI once saw one straddle 0.05 (verdict inconclusive). On one thread:
    0.02 wide, lower ends 0.83 or more. What the test proves does not depend on the thread count."""
    return config.validate({**params.model_dump(mode="json"), "threads": 1})


def op_types(path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_a_deployable_over_the_budget_fails_its_gate_naming_the_limit():
    report = {"measured": {"precision": "fp32", "latency_p95_ms": 0.3, "latency_p95_low_ms": 0.25,
                           "latency_p95_high_ms": 0.4, "size_kb": 90.0, "parameters": 5000, "macs": 10**6},
              "budget": {"latency_p95_ms": 0.2, "size_kb": 100.0, "batch_size": 1}}
    gates = {g.name: g for g in budget_gates(report)}
    assert not gates["target.latency_p95_ms"].passed and gates["target.latency_p95_ms"].value == 0.4
    assert gates["target.size_kb"].passed
    assert "95% CI [0.25, 0.4]" in gates["target.latency_p95_ms"].verdict
