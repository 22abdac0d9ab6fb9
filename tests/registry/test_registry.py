"""Promotion gates, the registry lock, the promotion history, rollback and forced promotion.

A fast project: real data step on synthetic images, untrained tiny models and a
report written by hand (the gates only read metrics/report.json), against a real
MLflow registry (local SQLite store; the server lock against a real `mlflow server`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from steps import config, data, export, promote, quantize, tracking
from steps.compression.families import build
from steps.compression.training import accuracy
from steps.core.datasets import load_splits, read_manifest
from steps.core.layout import PROMOTION, REPORT, metrics_path
from steps.core.names import Alias, ModelRole, Tag
from steps.core.torchkit import save_model, spec_from
from steps.evaluate.perclass import class_recall
from steps.promote.gates import quality_gates
from steps.registry import aliases, history, lock
from tests.helpers import REPO, shrinkflow, tampered, tiny_params, write_params

MODEL = "registry-test"


def make_project(root: Path, idx_dir: Path, **promote_overrides) -> config.Params:
    """params.yaml, the data splits, three untrained models (and their ONNX files) and a report the gates can read."""
    import torch

    raw = tiny_params(idx_dir, experiment="registry-tests")
    raw["promote"].update({"model_name": MODEL, "max_latency_p95_ms": 50.0, "min_accuracy": 0.0, **promote_overrides})
    root.mkdir(parents=True, exist_ok=True)
    write_params(root, raw)
    params = config.validate(raw)
    data.run(params, root)
    test = load_splits(root, ("test",))["test"]
    torch.manual_seed(0)
    models = {}
    classes = read_manifest(root)["classes"]
    for role, arch in ((ModelRole.TEACHER, params.teacher.arch), (ModelRole.PRUNED, params.teacher.arch),
                       (ModelRole.STUDENT, params.distill.student)):
        model = build(spec_from(arch, root))
        save_model(root, role, model, spec_from(arch, root), {})
        models[role] = {"accuracy": accuracy(model, test), "parameters": sum(p.numel() for p in model.parameters()),
                        "file_bytes": (root / f"models/{role}.safetensors").stat().st_size, "latency_p50_ms": 1.0,
                        "latency_p95_ms": 1.0, "latency_p95_low_ms": 0.9, "latency_p95_high_ms": 1.0,
                        "class_recall": class_recall(model, test, classes)}
    for key in ("accuracy", "class_recall"):  # no drop, overall or per class
        models[ModelRole.TEACHER][key] = models[ModelRole.STUDENT][key]
    export.run(params, root)  # the ONNX files promote registers with the version
    quantize.run(params, root)
    (root / REPORT).parent.mkdir(exist_ok=True)
    (root / REPORT).write_text(json.dumps({"models": models, "mlflow_run_id": "none", "threads": 1,
                                           "latency_batch_size": 16, "latency_backend": "onnxruntime",
                                           "test_images": len(test), "deploy": {}}))
    return params


@pytest.fixture(scope="module")
def store(tmp_path_factory, idx_dir) -> tuple[Path, config.Params]:
    """One project and MLflow store for the module (a fresh SQLite store costs seconds of migrations)."""
    root = tmp_path_factory.mktemp("registry") / "project"
    params = make_project(root, idx_dir)
    tracking.use_store(root)
    tracking.aliases(MODEL)  # creates the store once
    return root, params


@pytest.fixture
def project(store, request) -> tuple[Path, config.Params]:
    """The shared project with a registered-model name of this test's own."""
    root, params = store
    return root, with_promote(params, model_name=request.node.name.removeprefix("test_")[:40])


def with_promote(params: config.Params, **values) -> config.Params:
    raw = params.model_dump(mode="json")
    raw["promote"].update(values)
    return config.validate(raw)


def test_each_gate_is_logged_with_the_candidate_and_failure_names_it(project):
    root, params = project
    name = params.promote.model_name
    first = promote.run(params, root)
    assert first.promoted and first.summary == f"promoted: {name} v1 -> @champion"
    # issue 18: the latency gate reads p95's interval (upper end 1.0 ms here), and beating the champion is a paired
    # test (the same student ties itself, which no longer takes @champion) instead of min_improvement
    slow = promote.run(with_promote(params, max_latency_p95_ms=0.5), root)
    assert not slow.promoted and slow.alias == Alias.CHALLENGER
    assert slow.failed_gates == ["max_latency_p95_ms", "beat_champion"]
    assert slow.summary.startswith("not promoted: max_latency_p95_ms, beat_champion")
    tracking.use_store(root)
    tags = tracking.model_version(name, 2).tags
    for gate in ("min_accuracy", "max_accuracy_drop", "max_param_ratio", "max_latency_p95_ms", "beat_champion",
                 "max_class_drop_pt.teacher", "max_class_drop_pt.champion"):
        assert tags[f"shrinkflow.gate.{gate}"].split()[0] == ("fail" if gate in slow.failed_gates else "pass")
    assert tags[Tag.DECISION] == "rejected" and tags[Tag.TRIGGER]
    run = tracking.run_record(tags[Tag.PROMOTE_RUN])
    assert run.data.metrics["gate.max_latency_p95_ms"] == 1.0 and run.data.metrics["promoted"] == 0.0
    assert tracking.aliases(name) == {"champion": 1, "challenger": 2}


def test_size_gate_is_optional_and_enforced(project):
    root, params = project
    report = json.loads((root / REPORT).read_text())
    gates = quality_gates(report, with_promote(params, max_size_ratio=0.01).promote)
    size = next(g for g in gates if g.name == "max_size_ratio")
    assert not size.passed and size.value == pytest.approx(
        report["models"]["student"]["file_bytes"] / report["models"]["teacher"]["file_bytes"])
    assert "max_size_ratio" not in [g.name for g in quality_gates(report, params.promote)]


def test_champion_loads_as_pyfunc_with_signature_contract_and_raw_example(project):
    import mlflow

    root, params = project
    name = params.promote.model_name
    promote.run(params, root)
    tracking.use_store(root)
    model = mlflow.pyfunc.load_model(f"models:/{name}@{Alias.CHAMPION}")
    manifest = json.loads((root / "data/processed/manifest.json").read_text())
    outputs = [c.name for c in model.metadata.get_output_schema().inputs]
    assert outputs == ["label", "class_index", *manifest["classes"]]
    assert model.metadata.get_params_schema().to_dict()[0]["name"] == "output"
    assert model.metadata.metadata["shrinkflow_contract"]["classes"] == manifest["classes"]
    example = np.asarray(model.input_example)  # real raw test rows: uint8 pixels 0-255
    assert example.shape == (5, 28, 28) and example.max() > 1
    pixels = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28)).astype(np.uint8)
    assert model.predict(pixels).shape == (7, 2 + len(manifest["classes"]))


def test_history_explains_promotion_rejection_force_and_rollback_and_survives_a_new_client(project):
    root, params = project
    name = params.promote.model_name
    # issue 18 changed one rule here: a tie (the same student again) is rejected, where min_improvement 0 let it
    # take @champion; so v2 is the rejected one, then forced, then rolled back to v1
    promote.run(params, root)  # v1 champion
    promote.run(params, root)  # v2 ties v1: no evidence it is better -> rejected, @challenger
    tracking.use_store(root)
    forced = aliases.force_promote(name, 2, "hotfix for customer X", timeout_s=10)
    assert forced.champion_before == 1 and tracking.aliases(name)[Alias.PREVIOUS] == 1
    back = aliases.rollback(name, "hotfix broke things", timeout_s=10)
    assert (back.champion_before, back.champion_after) == (2, 1)
    assert tracking.aliases(name) == {"champion": 1}  # previous consumed; v2 is no longer the challenger
    with pytest.raises(aliases.RegistryError, match="no @previous"):
        aliases.rollback(name, "again", timeout_s=10)

    # A fresh process reads the history from the tracking store: nothing lives only in memory.
    out = shrinkflow(root, "registry", "history", name, "--json")
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)
    assert [(e["seq"], e["event"], e["version"]) for e in events] == [
        (1, "promoted", 1), (2, "rejected", 2), (3, "forced", 2), (4, "rollback", 1)]
    assert [e["prev"] for e in events] == ["none", *[e["run_id"] for e in events[:-1]]]
    for before, after in zip(events, events[1:], strict=False):
        assert after["champion_before"] == before["champion_after"]  # an unbroken chain of alias moves
    assert "did not beat champion" in events[1]["reason"] and "hotfix for customer X" == events[2]["reason"]
    # the paired test, in the history: a tie is within the non-inferiority margin but neither smaller nor faster
    assert events[1]["statistics"]["verdict"] == "non_inferior" and "neither smaller nor faster" in events[1]["reason"]
    assert tracking.model_version(name, 2).tags[Tag.DECISION] == "rolled-back"
    table = cli(root, "registry", "history", name)
    assert "rollback" in table.stdout and "hotfix broke things" in table.stdout


def cli(root: Path, *args: str):
    """The CLI in this process (typer's runner): fast; a fresh process is used where that is the point."""
    from typer.testing import CliRunner

    from flows.cli import app

    return CliRunner().invoke(app, [*args, "--root", str(root)])


def test_cli_force_needs_reason_and_rollback_reports(project):
    root, params = project
    name = params.promote.model_name
    promote.run(params, root)
    promote.run(params, root)
    no_force = cli(root, "promote", name, "1")
    assert no_force.exit_code == 2 and "--force" in no_force.stderr
    no_reason = cli(root, "promote", name, "1", "--force")
    assert no_reason.exit_code == 2 and "reason" in no_reason.stderr
    missing = cli(root, "promote", name, "99", "--force", "--reason", "x")
    assert missing.exit_code == 1 and "v99" in missing.stderr
    # issue 18: the tie v2 no longer takes @champion by itself, so the drill forces v2 (it forced v1 back over v2)
    forced = cli(root, "promote", name, "2", "--force", "--reason", "rollback drill")
    assert forced.exit_code == 0, forced.stderr
    tracking.use_store(root)
    assert tracking.aliases(name)["champion"] == 2
    event = history.events(name)[-1]
    assert event["event"] == "forced" and event["trigger"].startswith("shrinkflow CLI")
    rolled = cli(root, "registry", "rollback", name, "--reason", "drill over")
    assert rolled.exit_code == 0 and "v2 -> v1" in rolled.stdout


def test_a_crash_before_the_decision_leaves_the_champion_and_history_untouched(project):
    root, params = project
    name = params.promote.model_name
    promote.run(params, root)
    with tampered(root / "models/student.safetensors", lambda _: b"truncated"):
        with pytest.raises(Exception, match="student"):
            promote.run(params, root)
    tracking.use_store(root)
    assert tracking.aliases(name) == {"champion": 1}
    assert len(history.events(name)) == 1


def test_a_failure_after_registering_marks_the_version_failed_and_moves_no_alias(project):
    root, params = project
    name = params.promote.model_name
    promote.run(params, root)

    def lie(raw: bytes) -> bytes:  # the served model can no longer agree with the deployable
        result = json.loads(raw)
        result["variants"]["fp32"]["accuracy"] -= 0.5
        return json.dumps(result).encode()

    with tampered(root / metrics_path("quantize"), lie):
        with pytest.raises(ValueError, match="the served model is right on"):
            promote.run(params, root)
    tracking.use_store(root)
    tags = tracking.model_version(name, 2).tags
    assert tags[Tag.DECISION] == "failed" and "the served model is right on" in tags[Tag.REASON]
    assert tracking.aliases(name) == {"champion": 1}
    assert len(history.events(name)) == 1


def _promote_process(root: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "steps.promote", "--root", str(root)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def assert_race_explained(model: str, count: int) -> None:
    """Exactly one champion, and each decision was made against the champion the one before left."""
    events = history.events(model)
    assert [e["seq"] for e in events] == list(range(1, count + 1))
    assert events[0]["champion_before"] == "none"
    for before, after in zip(events, events[1:], strict=False):
        assert after["champion_before"] == before["champion_after"], events
    champion = tracking.aliases(model)[Alias.CHAMPION]
    assert str(champion) == events[-1]["champion_after"]
    assert {e["version"] for e in events} == set(range(1, count + 1))


def test_two_concurrent_promotions_leave_one_champion_and_a_history_of_both(project):
    root, params = project
    name = params.promote.model_name
    write_params(root, params.model_dump(mode="json"))  # the processes read params.yaml
    procs = [_promote_process(root) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    tracking.use_store(root)
    assert_race_explained(name, 2)
    decided = json.loads((root / PROMOTION).read_text())
    assert decided["version"] in (1, 2)


def contend(model: str, timeout_s: float) -> str:
    """Try the lock from another thread (its own open file / its own create request); 'acquired' or the error."""
    from concurrent.futures import ThreadPoolExecutor

    def attempt() -> str:
        try:
            with lock.promotion_lock(model, timeout_s):
                return "acquired"
        except lock.LockTimeout as err:
            return str(err)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(attempt).result()


def test_file_lock_excludes_another_holder_and_names_it(project):
    root, params = project
    name = params.promote.model_name
    tracking.use_store(root)
    with lock.promotion_lock(name, 5):
        refused = contend(name, 0.5)
    assert "still held after 0.5 s by" in refused and f"pid {os.getpid()}" in refused
    assert contend(name, 0.5) == "acquired"


# --- the server profile: the lock that works across machines -------------------------------------------------------


def test_registry_lock_on_a_server_excludes_and_breaks_stale_leases(tmp_path):
    import mlflow

    from tests.servers import mlflow_server

    name = "server-lock-test"
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", str(tmp_path / "artifacts"), tmp_path) as server:
        mlflow.set_tracking_uri(server.url)  # tracking.use_store() would pick the local store in this process
        mlflow.set_registry_uri(server.url)
        assert tracking.file_store_path() is None
        with lock.promotion_lock(name, timeout_s=5, lease_s=60):
            refused = contend(name, 0.5)
            assert tracking.lock_model_tags(lock.LOCK_PREFIX + name)["holder"]
        assert f"'{lock.LOCK_PREFIX}{name}' still held after 0.5 s by" in refused
        assert tracking.lock_model_tags(lock.LOCK_PREFIX + name) is None  # released
        # A holder that died: its lease has run out, so the next one breaks the lock instead of waiting forever.
        assert tracking.create_lock_model(lock.LOCK_PREFIX + name,
                                          {"holder": "dead", "token": "x", "expires": f"{time.time() - 1:.3f}"})
        assert contend(name, 0.5) == "acquired"
        assert tracking.lock_model_tags(lock.LOCK_PREFIX + name) is None


def test_the_decision_records_its_statistics_and_the_audit_recomputes_them(project):
    from steps.core.names import STATISTIC_TAG
    from steps.registry.audit.remeasure import decision_check

    root, params = project
    name = params.promote.model_name
    promote.run(params, root)
    second = promote.run(params, root)
    recorded = json.loads((root / PROMOTION).read_text())
    assert recorded["statistics"] == second.statistics and second.statistics["n"] == len(load_splits(root)["test"].y)
    assert second.statistics["mcnemar_b"] == second.statistics["mcnemar_c"] == 0  # the same student: no disagreement
    tracking.use_store(root)
    tags = dict(tracking.model_version(name, 2).tags)
    assert tags[f"{STATISTIC_TAG}.verdict"] == "non_inferior" and f"{STATISTIC_TAG}.worst_class" in tags
    assert history.events(name)[-1]["statistics"]["p_value"] == tags[f"{STATISTIC_TAG}.p_value"]
    [check] = decision_check(name, 2, tags, root)
    assert check.passed, check.detail
    # a statistic edited after the fact is caught, named
    tampered = {**tags, f"{STATISTIC_TAG}.ci_low_pt": "1.5"}
    [bad] = decision_check(name, 2, tampered, root)
    assert bad.passed is False and "ci_low_pt" in bad.detail
    [none] = decision_check(name, 1, dict(tracking.model_version(name, 1).tags), root)
    assert none.passed is None and "no champion" in none.detail
