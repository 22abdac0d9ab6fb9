"""benchmarks/lm_minitron.py's pure parts: the params every project is validated from, the parameter counts, and a
results dict rendered into goals and a table. The script's run itself trains models (benchmarks, not tests)."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from steps import config
from tests.helpers import REPO

STAGES = ("data", "teacher", "prune", "distill")


@pytest.fixture(scope="module")
def minitron():
    sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports its neighbours (common, lm_assets) by name
    try:
        yield importlib.import_module("lm_minitron")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def args(quick: bool = False, *overrides: str) -> SimpleNamespace:
    return SimpleNamespace(recipe=None, quick=quick, overrides=list(overrides))


@pytest.mark.parametrize("quick", [False, True])
def test_every_project_validates_for_its_stages_with_pure_logit_distillation(minitron, tmp_path: Path, quick):
    raw = minitron.build_raw(args(quick), tmp_path)
    for plan, fractions in minitron.PLANS.items():
        for name in STAGES:
            params = config.validate(minitron.plan_raw(raw, fractions), stage=name)
            assert params.prune.transformer.depth == fractions["depth"], plan
    distill = config.validate(raw, stage="distill").distill
    assert [(t.name, t.weight) for t in distill.terms] == [("soft_targets", 1.0), ("hard_labels", 0.0)]
    assert distill.temperature == 1.0 and raw["prune"]["finetune"]["epochs"] == 0
    assert raw["data"] == {**raw["data"], "task": "causal_lm", "path": str(tmp_path)}
    assert "class_names" not in raw["data"]  # the image classifier's data keys are not carried over


def test_quick_and_overrides_shrink_the_run(minitron, tmp_path: Path):
    raw = minitron.build_raw(args(True, "teacher.train.epochs=3"), tmp_path)
    assert raw["teacher"]["arch"]["config"]["hidden_size"] == 32 and raw["data"]["block_size"] == 32
    assert raw["teacher"]["train"]["epochs"] == 3 and raw["tracking"]["experiment"] == "benchmark"


def test_the_scratch_control_trains_the_pruned_shape_for_the_students_epochs(minitron, tmp_path: Path):
    raw = minitron.build_raw(args(), tmp_path)
    shape = {**minitron.TEACHER_SHAPE, "num_hidden_layers": 4, "intermediate_size": 528, "head_dim": 32}
    own = minitron.scratch_raw(raw, shape)
    assert own["teacher"]["arch"]["config"] == shape
    assert own["teacher"]["train"]["epochs"] == raw["distill"]["train"]["epochs"]
    assert raw["teacher"]["arch"]["config"]["num_hidden_layers"] == 6  # the base params untouched
    config.validate(own, stage="teacher")


def test_the_students_data_is_a_prefix_of_the_teachers_documents_in_its_tokens(minitron, tmp_path: Path):
    raw = minitron.build_raw(args(), tmp_path)
    own = minitron.student_raw(raw, tmp_path / "base", 150)
    data = config.validate(own, stage="data").data
    assert data.train_limit == 150 and data.tokenizer.train is None
    assert data.tokenizer.path.endswith("base/data/processed/tokenizer.json")
    assert (data.val_size, data.test_fraction, data.test_limit) == (25, 0.2, None)  # the teacher's test documents
    assert raw["data"]["tokenizer"] == {"train": {"kind": "bpe", "vocab_size": 8000}}


def test_counts_separate_the_vocabulary_tables_from_the_rest(minitron):
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(AutoConfig.for_model(**{**minitron.QUICK_SHAPE, "vocab_size": 50}))
    got = minitron.counts(hf)
    assert got["parameters"] == sum(p.numel() for p in hf.parameters())
    assert got["parameters"] - got["non_embedding"] == 2 * 50 * 32  # embedding and the untied head
    assert minitron.shape_of(hf)["num_key_value_heads"] == 2


def row(ppl: float, non_embedding: int, layers: int = 6, decode: float = 2.0) -> dict:
    shape = {"num_hidden_layers": layers, "num_attention_heads": 8, "num_key_value_heads": 2,
             "intermediate_size": 704, "hidden_size": 256}
    return {"perplexity": ppl, "bits_per_byte": 1.5, "next_token_accuracy": 0.3, "parameters": non_embedding + 100,
            "non_embedding": non_embedding, "shape": shape, "train_s": 60.0, "train_tokens": 1_000_000,
            "latency": {"decode_ms_per_token": decode}}


def test_goals_and_table_from_a_results_dict(minitron):
    rows = {"teacher": row(40.0, 1000), "width pruned": row(90.0, 500), "width pruned+KD": row(44.0, 500),
            "depth pruned": row(200.0, 500, 3), "depth pruned+KD": row(50.0, 500, 3, decode=1.0),
            "combined pruned": row(120.0, 500, 4), "combined pruned+KD": row(47.0, 500, 4),
            minitron.SCRATCH: row(60.0, 500, 4)}
    tokens = [100, 200, 300]  # every document at its model's perplexity: the ratios are the perplexities'
    documents = {name: [-math.log(r["perplexity"]) * n for n in tokens] for name, r in rows.items()}
    result = {"rows": rows, "comparisons": minitron.comparisons(rows, documents, tokens)}
    result["goals"] = goals = minitron.goals(result)
    assert goals["best_student"] == "width pruned+KD" and goals["within_goal"]
    assert goals["ratio"] == pytest.approx(44 / 40) and goals["ratio_high"] == pytest.approx(44 / 40)
    assert goals["kd_beats_scratch"] and goals["width_vs_depth"]["better"] == "width"
    text = minitron.table(result)
    assert text.count("\n| ") == len(rows)  # one line per model under the header
    assert "| depth pruned+KD | 3 | 8/2 | 704 | 256 |" in text and "2.00x |" in text
    assert "within 1.15x the teacher's perplexity: met" in text
    assert "prune+distill better than scratch at equal tokens: met" in text
