"""The distill stage between Hugging Face models (issue 26): a smaller config taught with soft targets, hidden
states and attention maps, and the pruned model itself (`distill.student: {name: pruned}`) taught by the unpruned
teacher; each writes a folder stock transformers reloads. And the params that go with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steps import config, data, distill, teacher
from steps.compression.training import predict_logits
from steps.core import datasets
from steps.core.layout import model_dir
from steps.core.names import ModelRole
from steps.core.stage import run_stage_main
from steps.core.torchkit import load_model, save_model
from tests.helpers import tiny_params, write_params
from tests.steps.test_hf_teacher import FOLDER, TINY_BERT, raw_params, refusal, texts

SMALL = {"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
         "intermediate_size": 32}
FEATURES = {"attention_maps": {"weight": 1.0, "layer_map": "last"}, "hidden_states": {"weight": 1.0}}


@pytest.fixture(scope="module")
def taught(tmp_path_factory) -> Path:
    """A text project after the data and teacher stages (the teacher: 2 layers, hidden 32)."""
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("hf-distill")
    write_params(root, raw_params(texts(root)))
    run_stage_main("data", data.run, ["--root", str(root)])
    run_stage_main("teacher", teacher.run, ["--root", str(root)])
    yield root
    torch.set_num_threads(threads)


def distill_params(root: Path, **section) -> config.Params:
    raw = raw_params(root / "mail.csv")
    raw["distill"].update(teacher="teacher", alpha=0.5, temperature=2.0, **section)
    raw["distill"]["train"].update(epochs=6, batch_size=8, lr=0.005)
    return config.validate(raw, stage="distill")


def stock(folder: Path):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    return model.eval()


def test_a_smaller_hf_student_learns_from_logits_hidden_states_and_attention(taught: Path):
    params = distill_params(taught, student={"name": "hf", "config": SMALL}, **FEATURES)
    assert [t.name for t in params.distill.terms] == ["soft_targets", "hard_labels", "attention_maps", "hidden_states"]
    result = distill.run(params, taught)
    assert result.teacher == "teacher" and result.val_accuracy >= 0.9  # chance is 0.5
    folder = taught / model_dir(ModelRole.STUDENT)
    assert sorted(p.name for p in folder.iterdir()) == FOLDER
    assert "attn_implementation" not in (folder / "config.json").read_text()  # eager was for distilling only
    reloaded = stock(folder)
    assert (reloaded.config.num_hidden_layers, reloaded.config.hidden_size) == (1, 16)
    assert reloaded.config._attn_implementation == "sdpa"
    val = datasets.load_splits(taught, ("val",))["val"]
    ours, _ = load_model(taught, ModelRole.STUDENT)
    with torch.no_grad():
        assert torch.allclose(reloaded(**val.x).logits, predict_logits(ours, val.x), atol=1e-5)
    featured = predict_logits(ours, val.x)

    logits_only = distill_params(taught, student={"name": "hf", "config": SMALL})
    distill.run(logits_only, taught)  # same seed and data: only the feature terms differ
    plain, _ = load_model(taught, ModelRole.STUDENT)
    assert not torch.allclose(predict_logits(plain, val.x), featured, atol=1e-4)  # the feature terms did train


def test_the_pruned_model_itself_is_distilled_from_the_unpruned_teacher(taught: Path):
    model, spec = load_model(taught, ModelRole.TEACHER)  # stands for hf pruning's output: the same folder form
    save_model(taught, ModelRole.PRUNED, model, spec, {"stage": "prune"})
    pruned = load_file(taught / model_dir(ModelRole.PRUNED) / "model.safetensors")
    params = distill_params(taught, student={"name": "pruned"}, **FEATURES)
    params = params.model_copy(update={"distill": params.distill.model_copy(
        update={"train": params.distill.train.model_copy(update={"epochs": 1, "lr": 1e-4})})})
    assert params.student_arch == params.teacher.arch  # its family is the teacher's
    result = distill.run(params, taught)
    assert result.teacher == "teacher"
    folder = taught / model_dir(ModelRole.STUDENT)
    student = load_file(folder / "model.safetensors")
    assert student.keys() == pruned.keys()
    moved = max((student[k] - pruned[k]).abs().max().item() for k in pruned)
    assert 0 < moved < 0.05  # one epoch at lr 1e-4 from the pruned weights, not from a new model
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == TINY_BERT["num_hidden_layers"]
    assert result.val_accuracy >= 0.9  # it keeps what the pruned model knew
    assert stock(folder).config.hidden_size == TINY_BERT["hidden_size"]


def test_a_pruned_student_cannot_teach_itself(tmp_path: Path):
    raw = raw_params(tmp_path / "mail.csv")
    raw["distill"]["student"] = {"name": "pruned"}
    assert "distill.student {name: pruned} is the pruned model itself: it cannot teach itself; set " \
           "distill.teacher: teacher" in refusal(raw, "distill")
    raw["distill"]["teacher"] = "teacher"
    assert config.validate(raw, stage="distill").distill.student_is_pruned


def test_a_student_reads_what_the_data_give_naming_both_keys(tmp_path: Path):
    on_images = tiny_params(tmp_path)
    on_images["distill"]["student"] = {"name": "hf", "config": SMALL}
    message = refusal(on_images, "distill")
    assert "distill.student.name 'hf' reads token ids, and data.source 'idx' gives no text" in message
    on_text = raw_params(tmp_path / "mail.csv")
    on_text["distill"]["student"] = {"name": "cnn", "channels": [4], "hidden": [8]}
    message = refusal(on_text, "distill")
    assert "distill.student.name 'cnn' cannot read token ids, and data.source 'text' gives token ids" in message
    assert config.validate(on_text, stage="teacher").distill.student.name == "cnn"  # the teacher reads no student


def test_block_terms_need_blocks_in_the_pruned_students_family_and_names_list_pruned(tmp_path: Path):
    raw = tiny_params(tmp_path)  # a cnn teacher
    raw["distill"].update(teacher="teacher", student={"name": "pruned"}, hidden_states={"weight": 1.0})
    assert "need a vit or hf student (teacher.arch.name, the pruned student's family, is 'cnn')" in refusal(raw, None)
    raw["distill"].update(hidden_states={"weight": 0.0})
    assert config.validate(raw).student_arch.name == "cnn"
    raw["distill"]["student"] = {"name": "prunde"}
    assert "'pruned'" in refusal(raw, None)


def test_augmenting_text_is_refused_before_any_work(taught: Path):
    raw = raw_params(taught / "mail.csv")
    raw["distill"].update(teacher="teacher", student={"name": "hf", "config": SMALL})
    raw["distill"]["train"].update(augment=True)
    with pytest.raises(ValueError, match=r"shifts and flips images; the data are token ids \(text\)"):
        distill.run(config.validate(raw, stage="distill"), taught)
