"""Issue 26's "done when": a CSV of labelled texts (string labels) and a `save_pretrained` folder run the whole
pipeline from params.yaml alone, through the real CLI (Prefect, MLflow's SQLite registry, DVC), to a registered
champion that stock `transformers` reloads and whose served pyfunc answers raw strings with class names."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import torch
from safetensors.torch import load_file

from benchmarks.checkout import copy_project
from steps import tracking
from steps.core.dag import STAGE_NAMES
from steps.core.layout import DATA_DIR, REPORT, metrics_path, model_dir
from steps.core.names import ModelRole, Tag
from steps.core.results import TeacherResult
from steps.serving.classifier import HF_ARTIFACT
from tests.helpers import REPO, cli_env, shrinkflow, stage_states, tiny_params

pytestmark = pytest.mark.integration

HAM = "lunch meeting notes agenda monday minutes weekly room booked thanks team report".split()
SPAM = "win money now cheap pills offer claim prize free click limited act".split()
TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
MAX_LENGTH = 16
NAME = "mail-student"


def texts(rows: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    pairs = [(" ".join(rng.choices(pool, k=rng.randint(3, 7))), kind)
             for _ in range(rows // 2) for pool, kind in ((HAM, "ham"), (SPAM, "spam"))]
    return pd.DataFrame(pairs, columns=["body", "kind"])


def pretrained_folder(folder: Path, corpus: list[str]) -> Path:
    """What a team brings: a BERT classifier written by save_pretrained, its tokenizer.json beside it."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from steps.sources import tokens

    tokenizer = tokens.wordpiece(80, corpus)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), max_position_embeddings=MAX_LENGTH + 2,
                        num_labels=2, pad_token_id=0, **TINY_BERT)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def hf_params(csv: Path, teacher: Path) -> dict:
    raw = tiny_params(csv, experiment="hf-integration")
    raw["data"] = {"source": "text", "path": str(csv), "val_size": 20, "max_length": MAX_LENGTH,
                   "text_column": "body", "label_column": "kind"}  # the tokenizer: the teacher folder's
    raw["teacher"] = {"arch": {"name": "hf", "path": str(teacher)},
                      "train": {**raw["teacher"]["train"], "epochs": 4, "batch_size": 8, "lr": 0.005}}
    raw["prune"].update(method="transformer", rounds=1,
                        transformer={**raw["prune"]["transformer"], "heads": 0.5, "embedding": 0.5, "mlp": 0.5,
                                     "importance": "output_norm"})
    raw["prune"]["finetune"].update(epochs=1, batch_size=8, lr=0.002)
    raw["distill"].update(teacher="teacher", student={"name": "pruned"})
    raw["distill"]["train"].update(epochs=2, batch_size=8, lr=0.002)
    raw["threads"] = 1
    raw["promote"].update(min_accuracy=0.6, max_accuracy_drop=0.4, max_param_ratio=1.0, model_name=NAME)
    return raw


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("hf-inputs")
    csv = source / "mail.csv"
    texts(120, seed=0).to_csv(csv, index=False)
    teacher = pretrained_folder(source / "bert-mail", texts(120, seed=1)["body"].tolist())
    return copy_project(tmp_path_factory.mktemp("hf-project"), hf_params(csv, teacher))


@pytest.fixture(scope="module")
def first_run(project: Path) -> subprocess.CompletedProcess:
    result = shrinkflow(project, "run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_the_whole_pipeline_runs_on_texts_and_a_pretrained_folder(project: Path, first_run):
    assert stage_states(first_run.stdout) == {name: "Completed" for name in STAGE_NAMES}
    assert f"promoted: {NAME} v1 -> @champion" in first_run.stdout
    student = json.loads((project / REPORT).read_text())["models"]["student"]
    assert student["accuracy"] >= 0.9 and student["macro_f1"] >= 0.9  # chance: 0.5; the classes share no word
    assert set(student["class_recall"]) == {"ham", "spam"}
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["data"].get("tokenizer") is None  # the data were tokenised by the teacher folder's tokenizer
    assert (project / DATA_DIR / "tokenizer.json").read_bytes() == \
        (Path(params["teacher"]["arch"]["path"]) / "tokenizer.json").read_bytes()


def test_the_champion_reloads_with_stock_transformers_in_its_pruned_shape(project: Path, first_run, tmp_path):
    from transformers import AutoModelForSequenceClassification

    tracking.use_store(project)
    folder = tracking.served_artifacts(NAME, 1, tmp_path)[HF_ARTIFACT]
    stock = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    shape = (stock.config.hidden_size, stock.config.num_attention_heads, stock.config.intermediate_size)
    assert shape == (16, 2, 32)  # half the heads (and with them half the hidden width) and half the FFN
    assert stock.config.id2label == {0: "ham", 1: "spam"}


def test_the_served_champion_answers_raw_strings_with_class_names(project: Path, first_run):
    tracking.use_store(project)
    served = tracking.load_predictor(NAME, 1)
    answers = served.predict(["win cheap pills now click", "weekly team meeting agenda monday"])
    assert answers["label"].tolist() == ["spam", "ham"]
    assert answers[["ham", "spam"]].sum(axis=1).round(6).tolist() == [1.0, 1.0]


def test_the_champion_teaches_the_next_run_kept_as_it_is(project: Path, first_run):
    """teacher.init from the registry with zero epochs: a team compresses its production hf model as it is."""
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["data"]["tokenizer"] = {"path": raw["teacher"]["arch"]["path"]}  # the same tokenizer, said explicitly
    raw["teacher"] = {"arch": {"name": "hf"}, "init": {"from": f"models:/{NAME}@champion"},
                      "train": {**raw["teacher"]["train"], "epochs": 0}}
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "steps.teacher", "--root", str(project)], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = TeacherResult.read(project / metrics_path("teacher"))
    tracking.use_store(project)
    assert result.init_uri == f"models:/{NAME}/1" and result.epochs == 0
    assert result.init_sha256 == tracking.model_version(NAME, 1).tags[Tag.MODEL_SHA256]
    kept = load_file(str(project / model_dir(ModelRole.TEACHER) / "model.safetensors"))
    registered = load_file(str(project / model_dir(ModelRole.STUDENT) / "model.safetensors"))
    assert kept.keys() == registered.keys() and all(torch.equal(kept[k], registered[k]) for k in kept)
