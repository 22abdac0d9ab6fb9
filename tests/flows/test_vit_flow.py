"""The ViT path end to end: `shrinkflow run` with a ViT teacher, transformer pruning and a ViT student distilled
with attention maps and hidden states, through export, int8, evaluation, promotion and a passing audit."""

from __future__ import annotations

import json

import pytest

from benchmarks.checkout import copy_project
from steps.core.names import ModelRole
from steps.core.torchkit import load_model
from steps.registry import audit
from tests.helpers import shrinkflow
from tests.steps.test_vit_stages import vit_params

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(tmp_path_factory, idx_dir):
    params = vit_params(idx_dir)
    params["tracking"]["experiment"] = "vit-flow"
    params["prune"]["transformer"] = {"heads": 0.5, "depth": 0.5}
    root = copy_project(tmp_path_factory.mktemp("vit-flow") / "project", params)
    result = shrinkflow(root, "run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def test_the_vit_pipeline_promotes_a_pruned_teacher_and_a_vit_student(project):
    pruned, spec = load_model(project, ModelRole.PRUNED)
    assert spec.name == "vit" and spec.depth == 1 and spec.block_heads == [1]
    student, student_spec = load_model(project, ModelRole.STUDENT)
    assert student_spec.name == "vit" and student_spec.embed_dim == 16 and len(student.blocks) == 1
    decision = json.loads((project / "metrics" / "promotion.json").read_text())
    assert decision["promoted"], decision


def test_the_promoted_vit_student_passes_its_audit(project):
    report = audit.run(project, "models:/fashion-student@champion", latency_tolerance=1e6)
    assert report.passed, [(c.name, c.detail) for c in report.failures()]
    names = {c.name for c in report.checks}
    assert {"data", "params.hash", "artifacts.sha256", "served model accuracy"} <= names
