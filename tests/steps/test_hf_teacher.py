"""The teacher stage on text data with an hf model (issue 26, second part): which params go together, the
stages that run on it so far, training on token ids, and a checkpoint folder stock transformers reloads."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from steps import config, data, teacher
from steps.compression.training import accuracy
from steps.core import datasets
from steps.core.dag import STAGE_NAMES, dvc_yaml, stage
from steps.core.layout import DATA_DIR, metrics_path, model_dir, model_path, spec_path
from steps.core.names import ModelRole
from steps.core.results import TeacherResult
from steps.core.stage import run_stage_main
from steps.core.torchkit import load_model
from tests.helpers import REPO, tiny_params, write_params

TINY_BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64}
HAM = "lunch meeting notes agenda monday minutes weekly room booked thanks team report".split()
SPAM = "win money now cheap pills offer claim prize free click limited act".split()
HF_MODEL = "steps/compression/families/hf/model.py"
FOLDER = ["config.json", "model.safetensors", "shrinkflow.json", "tokenizer.json"]
"""A teacher's checkpoint folder: what from_pretrained reads, the spec and record, the data's tokenizer."""


def texts(root: Path, per_class: int = 30) -> Path:
    """Short ham and spam texts from two word pools that share no word: a tiny model can separate them."""
    rng = random.Random(0)
    rows = [(" ".join(rng.choices(pool, k=rng.randint(3, 7))), kind)
            for _ in range(per_class) for pool, kind in ((HAM, "ham"), (SPAM, "spam"))]
    path = root / "mail.csv"
    pd.DataFrame(rows, columns=["body", "kind"]).to_csv(path, index=False)
    return path


def raw_params(path: Path, arch: dict | None = None) -> dict:
    raw = tiny_params(path)
    raw["data"] = {"source": "text", "path": str(path), "val_size": 12, "max_length": 16, "text_column": "body",
                   "label_column": "kind", "tokenizer": {"train": {"kind": "wordpiece", "vocab_size": 80}}}
    raw["teacher"]["arch"] = arch or {"name": "hf", "config": TINY_BERT}
    raw["teacher"]["train"].update(epochs=5, batch_size=8, lr=0.005)
    raw["distill"]["student"] = {"name": "hf", "config": {**TINY_BERT, "num_hidden_layers": 1}}  # text: an hf one
    raw["threads"] = 1
    return raw


def mlp_student(raw: dict) -> dict:
    """`raw` with tiny_params' own student, an mlp, which cannot read token ids."""
    return {**raw, "distill": {**raw["distill"], "student": {"name": "mlp", "hidden": [16], "batch_norm": False}}}


def refusal(raw: dict, stage_name: str | None) -> str:
    with pytest.raises(config.ConfigError) as err:
        config.validate(raw, stage=stage_name)
    return str(err.value)


def test_text_goes_with_hf_and_hf_with_text_naming_both_keys(tmp_path: Path):
    path = tmp_path / "mail.csv"
    cnn_on_text = raw_params(path, {"name": "cnn", "channels": [8], "hidden": [16]})
    for stage_name in (None, "teacher"):
        message = refusal(cnn_on_text, stage_name)
        assert "teacher.arch.name 'cnn'" in message and "data.source 'text'" in message and "name: hf" in message
    assert config.validate(cnn_on_text, stage="data").data.source == "text"  # the data stage reads no model
    hf_on_images = tiny_params(tmp_path)
    hf_on_images["teacher"]["arch"] = {"name": "hf", "config": TINY_BERT}
    message = refusal(hf_on_images, "teacher")
    assert "teacher.arch.name 'hf'" in message and "data.source 'idx'" in message and "data.source: text" in message


def test_every_stage_and_a_whole_run_take_an_hf_project(tmp_path: Path):
    raw = raw_params(tmp_path / "mail.csv")
    student = {**raw, "distill": {**raw["distill"], "student": {"name": "hf", "config": TINY_BERT}}}
    for stage_name in (None, *STAGE_NAMES):
        assert config.validate(student, stage=stage_name).teacher.arch.name == "hf", stage_name
    assert "distill.student.name 'mlp' cannot read token ids" in refusal(mlp_student(raw), None)


@pytest.mark.parametrize(("arch", "match"), [
    ({"name": "hf"}, r"exactly one of config .* and path"),
    ({"name": "hf", "config": TINY_BERT, "path": "m"}, r"exactly one of config .* and path"),
    ({"name": "hf", "config": {"hidden_size": 32}}, r"an hf config needs model_type"),
    ({"name": "hf", "config": {**TINY_BERT, "auto_map": {"AutoModel": "x.Y"}}}, r"may not hold auto_map"),
    ({"name": "hf", "config": {**TINY_BERT, "num_labels": 5, "vocab_size": 9}},
     r"hf config keys \['num_labels', 'vocab_size'\] come from the data"),
])
def test_hf_arch_settings_are_refused_by_key(tmp_path: Path, arch: dict, match: str):
    message = refusal(raw_params(tmp_path / "mail.csv", arch), "teacher")
    assert "teacher.arch" in message and re.search(match, message), message


def test_an_hf_teacher_starts_from_one_of_its_config_its_path_and_a_registered_version(tmp_path: Path):
    raw = raw_params(tmp_path / "mail.csv")
    raw["teacher"]["init"] = {"from": "models:/mail@champion"}
    assert "teacher.init names the model to start from, and so does teacher.arch.config" in refusal(raw, "teacher")
    raw["teacher"]["arch"] = {"name": "hf"}  # the registered version's folder says what it is
    assert config.validate(raw, stage="teacher").teacher.init.source == "models:/mail@champion"
    raw["teacher"]["init"] = {"from": "models/mail.safetensors"}
    assert "an hf teacher starts from a registered version" in refusal(raw, "teacher")
    raw["teacher"]["init"] = None
    assert "teacher.arch: an hf arch needs exactly one of config" in refusal(raw, "teacher")
    student = {**raw_params(tmp_path / "mail.csv"), "distill": {**raw["distill"], "student": {"name": "hf"}}}
    assert "distill.student: an hf student needs exactly one of config" in refusal(student, "distill")


def test_the_teacher_trains_on_text_and_saves_a_folder_stock_transformers_reloads(tmp_path: Path):
    from transformers import AutoModelForSequenceClassification

    write_params(tmp_path, raw_params(texts(tmp_path)))
    run_stage_main("data", data.run, ["--root", str(tmp_path)])  # what python -m steps.data runs
    (tmp_path / "models").mkdir()
    (tmp_path / model_path(ModelRole.TEACHER)).write_bytes(b"a cnn teacher of an earlier run")
    run_stage_main("teacher", teacher.run, ["--root", str(tmp_path)])  # ...and python -m steps.teacher
    result = TeacherResult.read(tmp_path / metrics_path("teacher"))
    assert result.val_accuracy >= 0.9  # chance is 0.5; the two classes share no word
    folder = tmp_path / model_dir(ModelRole.TEACHER)
    assert sorted(p.name for p in folder.iterdir()) == FOLDER
    assert not (tmp_path / model_path(ModelRole.TEACHER)).exists()  # the other form's stale file: gone
    assert not (tmp_path / spec_path(ModelRole.TEACHER)).exists()
    assert (folder / "tokenizer.json").read_bytes() == (tmp_path / DATA_DIR / "tokenizer.json").read_bytes()
    assert json.loads((folder / "shrinkflow.json").read_text())["meta"]["val_accuracy"] == result.val_accuracy
    val = datasets.load_splits(tmp_path, ("val",))["val"]
    model, spec = load_model(tmp_path, ModelRole.TEACHER)  # back through the family, as later stages will
    assert accuracy(model, val) == result.val_accuracy
    stock = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    stock.eval()
    with torch.no_grad():
        assert torch.equal(stock(**val.x).logits, model(**val.x))
    manifest = datasets.read_manifest(tmp_path)
    assert stock.config.num_labels == len(manifest["classes"]) == spec.num_classes == 2
    assert stock.config.vocab_size == manifest["tokenizer"]["vocab_size"]
    assert stock.config.id2label == {0: "ham", 1: "spam"}  # the data's class names, for whoever reloads it


def test_the_teacher_stage_declares_its_folder_and_the_hf_code(tmp_path: Path):
    params = config.validate(raw_params(tmp_path / "mail.csv"), stage="teacher")
    assert stage("teacher").outputs(params) == (model_dir(ModelRole.TEACHER),)
    assert dvc_yaml(params)["stages"]["teacher"]["outs"] == [model_dir(ModelRole.TEACHER)]
    assert HF_MODEL in stage("teacher").code(params)


def test_the_default_project_neither_runs_the_hf_family_nor_imports_transformers():
    check = ("import sys; from steps import config; from steps.core.dag import STAGES, stage; "
             "from steps.core.layout import model_files; from steps.core.names import ModelRole; "
             "p = config.load('.'); "
             f"assert not any({HF_MODEL!r} in st.code(p) for st in STAGES); "
             "assert stage('teacher').outputs(p) == model_files(ModelRole.TEACHER); "
             "import steps.teacher, steps.core.torchkit; "
             "assert 'transformers' not in sys.modules, 'transformers imported'")
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_python_m_distill_refuses_a_student_that_cannot_read_text_before_any_work(tmp_path: Path, capsys):
    write_params(tmp_path, mlp_student(raw_params(tmp_path / "mail.csv")))
    with pytest.raises(SystemExit) as exit_:
        run_stage_main("distill", lambda params, root: pytest.fail("distill ran"), ["--root", str(tmp_path)])
    assert exit_.value.code == 2
    message = capsys.readouterr().err
    assert "distill.student.name 'mlp' cannot read token ids" in message and "data.source 'text'" in message
    assert not (tmp_path / metrics_path("distill")).exists()
