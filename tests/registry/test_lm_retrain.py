"""`shrinkflow audit --retrain` of a registered language model: a tiny Llama project (tests/steps/test_lm_stages.py)
run through every stage in a git checkout, its data pushed by DVC, promoted once. The audit reruns the training
stages at the recorded commit and compares the retrained student with what the evaluate run logged: on this CPU
the same weights and the same perplexity float; a logged metric changed beyond its tolerance fails its row."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric

from benchmarks.checkout import copy_project
from steps import config, promote, storage, tracking
from steps.core.names import Tag
from steps.registry import audit
from steps.registry.audit.language import RETRAIN_PERPLEXITY_TOLERANCE
from steps.registry.audit.report import AuditReport
from steps.registry.audit.retrain import RETRAIN_TOLERANCE
from tests.steps.test_lm_stages import documents, lm_params, run_stages

NAME = "fashion-student"  # promote.model_name's default for data without a registered name of its own
CANDIDATE = f"models:/{NAME}/1"
RETRAIN_ROWS = ("retrain perplexity", "retrain next_token_accuracy", "retrain parameters",
                "retrain nonzero_parameters")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("lm-retrain")
    raw = lm_params(documents(base / "docs", count=16))  # the stages run twice: here and in the retrain
    raw.update(threads=1)
    raw["teacher"]["train"]["epochs"] = 1
    raw["evaluate"].update(latency_repeats=2, latency_warmup=0)
    root = copy_project(base / "project", raw)
    run_stages(raw, root)
    storage.commit_stage(root, "data")  # what the flow records after the data stage: dvc.lock holds the data hash
    storage.push(root)  # to the project's local DVC remote, which the audit fetches the data from
    assert promote.run(config.validate(raw, stage="promote"), root).promoted
    return root


def log_at_step(run_id: str, metrics: dict[str, float], step: int) -> None:
    """MLflow reports a run's metric as its value at the highest step."""
    MlflowClient().log_batch(run_id, metrics=[Metric(k, v, 0, step) for k, v in metrics.items()])


def rows(report: AuditReport) -> dict:
    return {c.name: c for c in report.checks}


def test_a_language_model_retrained_at_its_commit_is_the_same_model(project):
    report = audit.run(project, CANDIDATE, retrain=True)
    assert report.passed, {c.name: c.detail for c in report.failures()}
    found = rows(report)
    assert all(found[name].passed for name in RETRAIN_ROWS)
    assert "retrain accuracy" not in found and "retrain macs" not in found  # not the classifier's rows
    # CPU retraining is deterministic: the same float and the same weights, not merely within the tolerance
    perplexity = found["retrain perplexity"]
    assert perplexity.recorded == perplexity.observed
    assert perplexity.detail == "the same float as the evaluate run's; its weights have the version's sha256"
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=project, capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1  # the temporary worktree is gone


def test_logged_metrics_the_retrained_student_does_not_reproduce_fail_their_rows(project):
    """The evaluate run's perplexity 1.5 tolerances off, its next-token accuracy 1.5 tolerances off and one parameter
    more: each row names its difference; the untouched non-zero parameter count still passes."""
    tracking.use_store(project)
    run_id = tracking.model_version(NAME, 1).tags[Tag.EVALUATE_RUN]
    logged = tracking.run_record(run_id).data.metrics
    keys = ("student.perplexity", "student.next_token_accuracy", "student.parameters")
    original = {k: logged[k] for k in keys}
    changed = {"student.perplexity": original["student.perplexity"] * (1 + 1.5 * RETRAIN_PERPLEXITY_TOLERANCE),
               "student.next_token_accuracy": original["student.next_token_accuracy"] + 1.5 * RETRAIN_TOLERANCE,
               "student.parameters": original["student.parameters"] + 1}
    log_at_step(run_id, changed, 1)  # a later step than the stage's 0: the run's metric now
    try:
        report = audit.run(project, CANDIDATE, retrain=True)
    finally:
        log_at_step(run_id, original, 2)
    found = rows(report)
    assert [found[name].passed for name in RETRAIN_ROWS] == [False, False, False, True]
    assert found["retrain perplexity"].detail.startswith("relative difference 0.0015, beyond 0.001; its weights have "
                                                         "the version's sha256")
    assert found["retrain perplexity"].observed == repr(original["student.perplexity"])
    assert (found["retrain parameters"].recorded, found["retrain parameters"].observed) == \
        (f"{original['student.parameters'] + 1:.10g}", f"{original['student.parameters']:.10g}")
    assert tracking.run_record(run_id).data.metrics["student.perplexity"] == original["student.perplexity"]
