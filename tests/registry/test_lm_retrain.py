"""`shrinkflow audit --retrain` of a registered language model: a tiny Llama project (tests/lm_project.py, shared
with the stage and audit tests) run through every stage in a git checkout, its data pushed by DVC, promoted once.
The audit reruns the training stages at the recorded commit and compares the retrained student with what the
evaluate run logged: on this CPU the same weights and the same perplexity float; a logged metric changed beyond
its tolerance fails its row."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from steps import config, promote, storage, tracking
from steps.core.names import Tag
from steps.registry import audit
from steps.registry.audit.language import RETRAIN_PERPLEXITY_TOLERANCE, retrain_rows
from steps.registry.audit.report import AuditReport
from steps.registry.audit.retrain import RETRAIN_TOLERANCE
from tests import lm_project

# every stage of a tiny language model (built once per test run, tests/lm_project.py): make test, not make check,
# and scheduled with the slow tier (in the unit tier a module this long ran among the last)
pytestmark = pytest.mark.integration

NAME = "fashion-student"  # promote.model_name's default for data without a registered name of its own
CANDIDATE = f"models:/{NAME}/1"
RETRAIN_ROWS = ("retrain perplexity", "retrain next_token_accuracy", "retrain parameters",
                "retrain nonzero_parameters")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root, raw = lm_project.fresh_copy(tmp_path_factory, "lm-retrain")  # every stage run, on one thread
    storage.commit_stage(root, "data")  # what the flow records after the data stage: dvc.lock holds the data hash
    storage.push(root)  # to the project's local DVC remote, which the audit fetches the data from
    assert promote.run(config.validate(raw, stage="promote"), root).promoted
    return root


def rows(report: AuditReport) -> dict:
    return {c.name: c for c in report.checks}


@pytest.fixture(scope="module")
def report(project) -> AuditReport:
    """The whole audit with --retrain, once: the rerun of the training stages is this module's cost."""
    return audit.run(project, CANDIDATE, retrain=True)


def test_a_language_model_retrained_at_its_commit_is_the_same_model(project, report):
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


def test_logged_metrics_the_retrained_student_does_not_reproduce_fail_their_rows(project, report):
    """The retrained student's numbers (the audit's rows above) against the evaluate run's metrics with perplexity
    1.5 tolerances off, next-token accuracy 1.5 tolerances off and one parameter more: each row names its
    difference; the untouched non-zero parameter count still passes. (The rows are recomputed, not retrained
    again: the rerun is the same deterministic rerun the first test checked.)"""
    tracking.use_store(project)
    tags = tracking.model_version(NAME, 1).tags
    logged = dict(tracking.run_record(tags[Tag.EVALUATE_RUN]).data.metrics)
    found = rows(report)
    student = {"perplexity": float(found["retrain perplexity"].observed),
               "next_token_accuracy": logged["student.next_token_accuracy"],
               "parameters": float(found["retrain parameters"].observed),
               "nonzero_parameters": float(found["retrain nonzero_parameters"].observed)}
    original = dict(logged)
    logged.update({"student.perplexity": original["student.perplexity"] * (1 + 1.5 * RETRAIN_PERPLEXITY_TOLERANCE),
                   "student.next_token_accuracy": original["student.next_token_accuracy"] + 1.5 * RETRAIN_TOLERANCE,
                   "student.parameters": original["student.parameters"] + 1})
    checks = {c.name: c for c in retrain_rows(student, tags[Tag.MODEL_SHA256], logged, tags, RETRAIN_TOLERANCE)}
    assert [checks[name].passed for name in RETRAIN_ROWS] == [False, False, False, True]
    assert checks["retrain perplexity"].detail.startswith("relative difference 0.0015, beyond 0.001; its weights "
                                                          "have the version's sha256")
    assert checks["retrain perplexity"].observed == repr(original["student.perplexity"])
    assert (checks["retrain parameters"].recorded, checks["retrain parameters"].observed) == \
        (f"{original['student.parameters'] + 1:.10g}", f"{original['student.parameters']:.10g}")
    other = {c.name: c for c in retrain_rows(student, "0" * 64, original, tags, RETRAIN_TOLERANCE)}
    assert other["retrain perplexity"].passed and "its weights differ from the version's" in \
        other["retrain perplexity"].detail
