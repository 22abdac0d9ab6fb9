"""The promote stage on an hf student (issue 26) against a real MLflow store: the version serves raw texts, holds
the student's save_pretrained folder and tokenizer, and its lineage covers the tokenizer's sha256 and the
teacher's source, which the audit's checks re-prove from the registered artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from steps import config, promote, tracking
from steps.core import datasets
from steps.core.hashing import sha256
from steps.core.layout import PROMOTION, REPORT, model_dir, model_weights, onnx_path
from steps.core.names import Alias, Artifact, ModelRole, Tag
from steps.core.stage import run_stage_main
from steps.core.torchkit import load_model
from steps.registry.audit import serves_texts
from steps.registry.audit.records import artifacts_check, teacher_init_check, tokenizer_check
from steps.serving.classifier import TOKENIZER_ARTIFACT
from tests.serving.textmodel import evaluated, text_project


@pytest.fixture(scope="module")
def promoted(tmp_path_factory) -> tuple[Path, str, int]:
    torch.set_num_threads(1)
    root = text_project(tmp_path_factory.mktemp("hf-promote"))
    evaluated(root)
    run_stage_main("promote", promote.run, ["--root", str(root)])  # what python -m steps.promote runs
    decision = json.loads((root / PROMOTION).read_text())
    tracking.use_store(root)
    return root, decision["model_name"], decision["version"]


def test_the_champion_serves_raw_texts_as_the_student_classifies_their_tokens(promoted):
    root, name, version = promoted
    tracking.use_store(root)
    assert tracking.aliases(name)[Alias.CHAMPION] == version
    texts, y = datasets.raw_texts(root, "test")
    answers = tracking.load_predictor(name, version).predict(texts)
    student, _ = load_model(root, ModelRole.STUDENT)
    with torch.no_grad():
        wanted = student(**datasets.load_splits(root, ("test",))["test"].x).argmax(1).numpy()
    assert answers["class_index"].tolist() == wanted.tolist()
    tags = MlflowClient().get_model_version(name, str(version)).tags
    served = float(tags[Tag.SERVED_ACCURACY])
    evaluated_accuracy = json.loads((root / REPORT).read_text())["models"][ModelRole.STUDENT]["accuracy"]
    assert served == pytest.approx(evaluated_accuracy) == pytest.approx(float(np.mean(wanted == y)))


def test_the_version_records_the_folder_the_tokenizer_and_the_teachers_source(promoted, tmp_path):
    root, name, version = promoted
    tracking.use_store(root)
    tags = dict(MlflowClient().get_model_version(name, str(version)).tags)
    manifest = datasets.read_manifest(root)
    assert tags[Tag.MODEL_SHA256] == sha256(root / model_dir(ModelRole.STUDENT) / "model.safetensors")
    assert tags[Tag.TOKENIZER_SHA256] == manifest["tokenizer"]["sha256"]
    rows = artifacts_check(name, version, tags, tmp_path)  # the logged folder, rebuilt where evaluate reads it
    assert all(row.passed for row in rows), rows
    assert sha256(model_weights(tmp_path, ModelRole.STUDENT)) == tags[Tag.MODEL_SHA256]
    assert sorted(p.name for p in (tmp_path / model_dir(ModelRole.STUDENT)).iterdir()) == \
        sorted(p.name for p in (root / model_dir(ModelRole.STUDENT)).iterdir())
    (row,) = tokenizer_check(name, version, tags, root)
    assert row.passed, row
    # a teacher loaded from a save_pretrained folder: the folder and its weights' sha256 are its source
    raw = config.load(root, stage="promote").model_dump(mode="json")
    raw["teacher"]["arch"] = {"name": "hf", "path": model_dir(ModelRole.TEACHER)}
    source = promote.teacher_init_tags(root, config.validate(raw, stage="promote"))
    assert source == {Tag.TEACHER_INIT: model_dir(ModelRole.TEACHER),
                      Tag.TEACHER_INIT_SHA256: sha256(root / model_dir(ModelRole.TEACHER) / "model.safetensors")}
    (row,) = teacher_init_check(root, source, tmp_path / "init")
    assert row.passed, row


def test_the_audit_names_a_swapped_tokenizer_and_a_changed_teacher_source(promoted, tmp_path):
    root, name, version = promoted
    tracking.use_store(root)
    work = tmp_path / "root"
    shutil.copytree(root, work, ignore=shutil.ignore_patterns("mlartifacts", "mlflow.db"))
    tags = dict(MlflowClient().get_model_version(name, str(version)).tags)
    served = tracking.served_artifacts(name, version, tmp_path / "before")
    stored = next((root / "mlartifacts").rglob(f"artifacts/{served[TOKENIZER_ARTIFACT].name}"))
    original = stored.read_bytes()
    try:
        stored.write_bytes(original.replace(b"[UNK]", b"[UNKNOWN]", 1))
        (row,) = tokenizer_check(name, version, tags, work)
    finally:
        stored.write_bytes(original)
    assert row.passed is False and "served tokenizer" in row.detail and "model folder" not in row.detail
    untagged = {k: v for k, v in tags.items() if k != Tag.TOKENIZER_SHA256}  # a removed tag fails, not skips
    assert serves_texts(name, version, untagged)
    (row,) = tokenizer_check(name, version, untagged, work)
    assert row.passed is False and Tag.TOKENIZER_SHA256 in row.detail
    teacher = work / model_dir(ModelRole.TEACHER) / "model.safetensors"
    source = {Tag.TEACHER_INIT: str(teacher.parent), Tag.TEACHER_INIT_SHA256: sha256(teacher)}
    teacher.write_bytes(teacher.read_bytes() + b"\0")
    (row,) = teacher_init_check(work, source, tmp_path / "init")
    assert row.passed is False and row.recorded != row.observed


def test_a_second_promotion_is_compared_with_the_champion_on_raw_texts(promoted):
    root, name, version = promoted
    tracking.use_store(root)
    run_stage_main("promote", promote.run, ["--root", str(root)])
    second = json.loads((root / PROMOTION).read_text())
    assert not second["promoted"] and second["incumbent_version"] == version  # the same model cannot beat itself
    assert second["statistics"]["n"] == len(datasets.raw_texts(root, "test")[0])
    assert tracking.aliases(name)[Alias.CHAMPION] == version
    run_id = MlflowClient().get_model_version(name, str(second["version"])).tags[Tag.PROMOTE_RUN]
    logged = tracking.download_artifacts(tracking.run_artifact_uri(run_id, Artifact.MODEL_FILES), root / ".check")
    assert (logged / "student" / "config.json").is_file()  # the folder itself, which the audit rebuilds from


def test_a_served_model_that_answers_one_row_differently_is_refused_naming_the_row(promoted):
    """Served answers are compared row by row with the deployable file on the data stage's token ids (equal counts
    of right answers could hide answers that moved both ways)."""
    root, name, version = promoted
    deployable = root / onnx_path(ModelRole.STUDENT)
    direct = promote.deployable_labels(root, deployable)
    promote.check_served_answers(name, version, direct, root, deployable)  # what the registered pyfunc answered
    moved = direct.copy()
    moved[3] = 1 - moved[3]  # a binary task: the other class
    with pytest.raises(ValueError, match=r"answers 1 of \d+ test rows differently from the deployable student.onnx "
                                         r"on the data stage's inputs \(first: row 3\)"):
        promote.check_served_answers(name, version, moved, root, deployable)
