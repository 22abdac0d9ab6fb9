"""The DAG under an hf project: each stage reads the checkpoints as their family saves them (folders), and
the files outside the pipeline that params name (a saved tokenizer, the folder a teacher is loaded from)
are dependencies of the stage that reads them, so DVC and the flow's cache see a change in either."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps import config
from steps.core.dag import STAGES, dvc_yaml, stage
from steps.core.layout import DATA_DIR, model_dir, model_files
from steps.core.names import ModelRole
from tests.steps.test_hf_teacher import TINY_BERT, raw_params


def hf_params(tmp_path: Path, **data_keys) -> config.Params:
    raw = raw_params(tmp_path / "mail.csv")
    raw["distill"]["student"] = {"name": "hf", "config": {**TINY_BERT, "num_hidden_layers": 1}}
    raw["data"].update(data_keys)
    return config.validate(raw, stage="data")


def test_every_stage_reads_the_hf_checkpoints_as_folders(tmp_path: Path):
    params = hf_params(tmp_path)
    for st in STAGES:
        inputs = st.inputs_for(params)
        for role in ModelRole:
            assert not set(model_files(role)) & set(inputs), (st.name, role)  # no .safetensors of an hf model
    assert stage("prune").inputs_for(params) == (DATA_DIR, model_dir(ModelRole.TEACHER))
    assert {model_dir(role) for role in ModelRole} <= set(stage("evaluate").inputs_for(params))
    assert model_dir(ModelRole.STUDENT) in dvc_yaml(params)["stages"]["promote"]["deps"]


def test_a_default_project_keeps_its_files():
    params = config.load(".")
    for st in STAGES:
        assert st.inputs_for(params) == st.inputs, st.name


def test_a_saved_tokenizer_is_a_dependency_of_the_data_stage(tmp_path: Path):
    params = hf_params(tmp_path, tokenizer={"path": "vendor/tokenizer"})
    assert stage("data").inputs_for(params)[-1] == "vendor/tokenizer"
    assert "vendor/tokenizer" in dvc_yaml(params)["stages"]["data"]["deps"]
    assert "vendor/tokenizer" not in stage("teacher").inputs_for(params)


def test_the_folder_a_teacher_loads_from_is_a_dependency_of_the_teacher_stage(tmp_path: Path):
    raw = raw_params(tmp_path / "mail.csv", {"name": "hf", "path": "vendor/minilm"})
    params = config.validate(raw, stage="teacher")
    assert stage("teacher").inputs_for(params) == (DATA_DIR, "vendor/minilm")
    assert "vendor/minilm" in dvc_yaml(params)["stages"]["teacher"]["deps"]


def test_text_data_without_a_tokenizer_take_the_teachers(tmp_path: Path):
    raw = raw_params(tmp_path / "mail.csv", {"name": "hf", "path": "vendor/minilm"})
    del raw["data"]["tokenizer"]
    params = config.validate(raw, stage="data")
    assert params.data.tokenizer.path == "vendor/minilm"
    assert stage("data").inputs_for(params)[-1] == "vendor/minilm"  # and the data stage reruns when it changes


def test_text_data_without_a_tokenizer_or_a_teacher_folder_are_refused_naming_both(tmp_path: Path):
    raw = raw_params(tmp_path / "mail.csv")
    del raw["data"]["tokenizer"]
    with pytest.raises(config.ConfigError) as err:
        config.validate(raw, stage="data")
    assert "data.tokenizer" in str(err.value) and "teacher.arch.path" in str(err.value)


def test_a_sweep_member_gets_the_shared_teacher_in_its_familys_form(tmp_path: Path):
    from flows.sweep import seed_member

    root, member = tmp_path / "project", tmp_path / "member"
    for rel in (f"{DATA_DIR}/train.npz", f"{model_dir(ModelRole.TEACHER)}/config.json",
                f"{model_dir(ModelRole.TEACHER)}/model.safetensors"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    seed_member(root, member, hf_params(tmp_path))
    copied = sorted(str(p.relative_to(member)) for p in member.rglob("*") if p.is_file())
    assert copied == [f"{DATA_DIR}/train.npz", f"{model_dir(ModelRole.TEACHER)}/config.json",
                      f"{model_dir(ModelRole.TEACHER)}/model.safetensors", "params.yaml"]


def test_the_pruned_and_distilled_hf_models_are_written_as_folders(tmp_path: Path):
    params = hf_params(tmp_path)
    assert stage("prune").outputs(params) == (model_dir(ModelRole.PRUNED),)
    assert stage("distill").outputs(params) == (model_dir(ModelRole.STUDENT),)
    raw = raw_params(tmp_path / "mail.csv")
    raw["distill"].update(teacher="teacher", student={"name": "pruned"})  # the pruned model, distilled
    pruned_student = config.validate(raw, stage="data")
    assert stage("distill").outputs(pruned_student) == (model_dir(ModelRole.STUDENT),)
    assert model_dir(ModelRole.STUDENT) in stage("evaluate").inputs_for(pruned_student)


def test_the_folder_a_student_loads_from_is_a_dependency_of_the_distill_stage(tmp_path: Path):
    raw = raw_params(tmp_path / "mail.csv")
    raw["distill"]["student"] = {"name": "hf", "path": "vendor/small-bert"}
    params = config.validate(raw, stage="distill")
    assert stage("distill").inputs_for(params)[-1] == "vendor/small-bert"
    assert "vendor/small-bert" in dvc_yaml(params)["stages"]["distill"]["deps"]
