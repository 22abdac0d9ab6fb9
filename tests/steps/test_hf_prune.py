"""The prune stage on an hf teacher (issue 26): prune.method transformer on a tiny BERT trained on tiny texts,
fine-tuned on token ids after each round, saved as a models/pruned/ folder that stock transformers reloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from steps import config, data, prune, teacher
from steps.compression import measure
from steps.core import datasets
from steps.core.dag import stage
from steps.core.layout import metrics_path, model_dir
from steps.core.names import ModelRole
from steps.core.results import PruneResult
from steps.core.stage import run_stage_main
from steps.core.torchkit import load_model
from tests.helpers import write_params
from tests.steps.test_hf_teacher import FOLDER, raw_params, texts

TRANSFORMER = {"depth": 0.5, "heads": 0.5, "embedding": 0.5, "mlp": 0.5, "importance": "output_norm",
               "depth_metric": "block_influence"}


def pruning(raw: dict, **transformer) -> dict:
    raw["teacher"]["train"]["epochs"] = 2
    raw["prune"].update(method="transformer", rounds=2, schedule="linear", transformer=transformer)
    raw["prune"]["finetune"].update(epochs=1, batch_size=16, lr=0.005)
    return raw


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A project whose data and teacher stages ran: a tiny BERT (2 layers, hidden 32, 2 heads, FFN 64)."""
    root = tmp_path_factory.mktemp("hf_prune")
    write_params(root, pruning(raw_params(texts(root)), **TRANSFORMER))
    run_stage_main("data", data.run, ["--root", str(root)])
    run_stage_main("teacher", teacher.run, ["--root", str(root)])
    return root


def test_the_prune_stage_writes_a_folder_stock_from_pretrained_reloads_with_the_pruned_config(trained: Path):
    run_stage_main("prune", prune.run, ["--root", str(trained)])  # what python -m steps.prune runs
    result = PruneResult.read(trained / metrics_path("prune"))
    folder = trained / model_dir(ModelRole.PRUNED)
    assert sorted(p.name for p in folder.iterdir()) == FOLDER
    stock = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    c = stock.config
    assert (c.num_hidden_layers, c.num_attention_heads, c.hidden_size, c.intermediate_size) == (1, 1, 16, 32)
    assert c.id2label == {0: "ham", 1: "spam"}
    teacher_model, _ = load_model(trained, ModelRole.TEACHER)
    model, _ = load_model(trained, ModelRole.PRUNED)  # back through the family, as later stages will
    assert result.parameters == measure.parameters(model) == measure.parameters(stock)
    assert result.parameters < measure.parameters(teacher_model)
    assert [p["round"] for p in result.curve] == [1, 2] and result.method == "transformer"
    val = datasets.load_splits(trained, ("val",))["val"]
    stock.eval()
    with torch.no_grad():
        torch.testing.assert_close(stock(**val.x).logits, model(**val.x), rtol=0, atol=1e-6)
    assert json.loads((folder / "shrinkflow.json").read_text())["meta"]["method"] == "transformer"


def test_a_plan_an_hf_config_cannot_describe_stops_the_stage_naming_both_keys(trained: Path):
    params = config.validate(pruning(raw_params(trained / "mail.csv"), heads=0.5), stage="prune")
    with pytest.raises(ValueError, match=r"prune.transformer.heads 0.5 keeps 1 of 2 heads but "
                                         r"prune.transformer.embedding 0.0 keeps 32 of 32"):
        prune.run(params, trained)


def test_the_prune_stage_of_an_hf_project_declares_the_hf_pruning_code(tmp_path: Path):
    params = config.validate(pruning(raw_params(tmp_path / "mail.csv"), **TRANSFORMER), stage="prune")
    code = stage("prune").code(params)
    for module in ("method", "pruning", "importance"):
        assert f"steps/compression/families/hf/{module}.py" in code, module
