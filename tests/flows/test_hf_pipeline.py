"""Issue 26's "done when": a CSV of labelled texts (string labels) and a `save_pretrained` folder run the whole
pipeline from params.yaml alone, through the real CLI (Prefect, MLflow's SQLite registry, DVC), to a registered
champion that stock `transformers` reloads and whose served pyfunc answers raw strings with class names."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmarks.checkout import copy_project
from steps.core.dag import STAGE_NAMES
from steps.core.layout import REPORT
from tests.helpers import shrinkflow, stage_states, tiny_params

pytestmark = pytest.mark.integration

HAM = "lunch meeting notes agenda monday minutes weekly room booked thanks team report".split()
SPAM = "win money now cheap pills offer claim prize free click limited act".split()
TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
MAX_LENGTH = 16


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
                        transformer={**raw["prune"].get("transformer", {}), "heads": 0.5, "mlp": 0.5})
    raw["prune"]["finetune"].update(epochs=1, batch_size=8, lr=0.002)
    raw["distill"].update(teacher="teacher", student={"name": "pruned"})
    raw["distill"]["train"].update(epochs=2, batch_size=8, lr=0.002)
    raw["threads"] = 1
    raw["promote"].update(min_accuracy=0.6, max_accuracy_drop=0.4, max_param_ratio=1.0)
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
    report = json.loads((project / REPORT).read_text())
    assert report  # filled in below once the evaluate stage's text report is known
    assert yaml.safe_load((project / "params.yaml").read_text())["data"].get("tokenizer") is None
