"""`shrinkflow audit` of a registered language model: a tiny Llama project (tests/lm_project.py) run through
every stage in a git checkout, its data recorded and pushed by DVC as the flow does, promoted twice (the second
student, distilled again at another learning rate, faces the first as champion). The audit of the second version
re-proves its tokenizer, its perplexity bit for bit, its next-token accuracy, its served generations and the paired
document bootstrap against the champion; changed registered weights and an edited perplexity tag are named."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from steps import config, distill, evaluate, promote, storage, tracking
from steps.core.names import STATISTIC_TAG, Tag
from steps.registry import audit
from steps.registry.audit.report import AuditReport
from tests import lm_project
from tests.helpers import tampered, write_params
from tests.lm_project import run_stages

# every stage of a tiny language model (built once per test run, tests/lm_project.py): make test, not make check,
# and scheduled with the slow tier (in the unit tier a module this long ran among the last)
pytestmark = pytest.mark.integration

NAME = "fashion-student"  # promote.model_name's default for data without a registered name of its own
CANDIDATE = f"models:/{NAME}/2"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root, raw = lm_project.fresh_copy(tmp_path_factory, "lm-audit")  # every stage run, on one thread
    storage.commit_stage(root, "data")  # what the flow records after the data stage: dvc.lock holds the data hash
    storage.push(root)  # to the project's local DVC remote, which the audit fetches the data from
    assert promote.run(config.validate(raw, stage="promote"), root).promoted
    raw["distill"]["train"]["lr"] = 0.003  # another student, so the comparison with the champion measures something
    write_params(root, raw)
    run_stages(raw, root, (("distill", distill), ("evaluate", evaluate)))
    second = promote.run(config.validate(raw, stage="promote"), root)
    assert (second.version, second.incumbent_version) == (2, 1)
    return root


def failed(report: AuditReport) -> dict[str, str]:
    return {c.name: c.detail for c in report.failures()}


def test_a_fresh_language_model_passes_every_check(project):
    report = audit.run(project, CANDIDATE)
    rows = {c.name: c for c in report.checks}
    assert report.passed, failed(report)
    skipped = {c.name for c in report.checks if c.passed is None}
    assert skipped == {"metric latency", "budget"}  # nothing the version records is left unchecked
    for name in ("data", "params.hash", "artifacts.sha256", "artifacts.weights", "tokenizer.sha256",
                 "metric perplexity", "metric next_token_accuracy", "served model generations",
                 "decision statistics"):
        assert rows[name].passed, (name, rows[name])
    assert "served folder, model files, fetched data" in rows["tokenizer.sha256"].detail
    tracking.use_store(project)
    tags = tracking.model_version(NAME, 2).tags
    assert rows["metric perplexity"].observed == tags[Tag.PERPLEXITY]  # the float's repr, not a rounding of it
    assert tags[f"{STATISTIC_TAG}.perplexity_ratio"] != "1"  # two different students were compared
    assert "vs champion v1 recomputed: 8 statistics equal" in rows["decision statistics"].detail


def test_changed_registered_weights_fail_the_artifacts_and_are_not_measured(project):
    tracking.use_store(project)
    source = tracking.model_version(NAME, 2).source  # models:/m-<id>: the served model's own folder
    weights = next((project / "mlartifacts" / "models" / source.rsplit("/", 1)[-1]).rglob("model.safetensors"))
    with tampered(weights, lambda b: b[:-1] + bytes([b[-1] ^ 1])):
        report = audit.run(project, CANDIDATE)
    assert "model.safetensors" in failed(report)["artifacts.sha256"]
    assert next(c for c in report.checks if c.name == "metrics").passed is None


def test_a_perplexity_tag_one_float_step_off_fails_naming_perplexity(project):
    tracking.use_store(project)
    recorded = tracking.model_version(NAME, 2).tags[Tag.PERPLEXITY]
    edited = repr(math.nextafter(float(recorded), math.inf))
    tracking.tag_version(NAME, 2, {Tag.PERPLEXITY: edited})
    try:
        report = audit.run(project, CANDIDATE)
    finally:
        tracking.tag_version(NAME, 2, {Tag.PERPLEXITY: recorded})
    assert set(failed(report)) == {"metric perplexity"}
    row = next(c for c in report.checks if c.name == "metric perplexity")
    assert (row.recorded, row.observed) == (edited, recorded)
    assert f"re-measured {recorded}, tagged {edited!r} (relative difference" in row.detail


def test_a_served_tokenizer_other_than_the_tagged_one_is_named(project):
    """A generator has no contract: its served folder's tokenizer.json is compared with the tag directly."""
    tracking.use_store(project)
    source = tracking.model_version(NAME, 2).source
    served = next((project / "mlartifacts" / "models" / source.rsplit("/", 1)[-1]).rglob("tokenizer.json"))
    with tampered(served, lambda b: b.replace(b"<unk>", b"<unknown>", 1)):
        report = audit.run(project, CANDIDATE)
    assert failed(report)["tokenizer.sha256"].startswith("differs from the tag: served folder ")
    assert "model files" not in failed(report)["tokenizer.sha256"]  # the promote run's copy is untouched
