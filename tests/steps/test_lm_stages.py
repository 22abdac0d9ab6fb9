"""A causal language model through the stages (data.task causal_lm): a tiny Llama trained on documents the test
writes, pruned (Minitron's width and depth, or Wanda 2:4), distilled by its logits, exported, quantized and
evaluated; each stage's output checked against what stock transformers and a hand computation give. The project is
tests/lm_project.py's, built once per test run; this module works in a copy of it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from steps import config, prune, quantize
from steps.compression.generation import greedy_generations
from steps.core import datasets
from steps.core.layout import REPORT, metrics_path, model_dir
from steps.core.names import ModelRole
from steps.core.results import ExportResult, PruneResult, QuantizeResult, TeacherResult
from tests import lm_project
from tests.lm_project import documents, lm_params, run_stages  # noqa: F401 (other modules import them from here)

# every stage of a tiny language model (built once per test run, tests/lm_project.py): make test, not make check,
# and scheduled with the slow tier (in the unit tier a module this long ran among the last)
pytestmark = pytest.mark.integration

RESULTS = {"teacher": TeacherResult, "prune": PruneResult, "export": ExportResult, "quantize": QuantizeResult}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the project tests/lm_project.py builds once per run, with the results its stages wrote."""
    root, _ = lm_project.fresh_copy(tmp_path_factory, "lm")
    return root, {name: result.read(root / metrics_path(name)) for name, result in RESULTS.items()}


def built_params(root: Path, **prune_keys) -> dict:
    """The params the project was built with (its params.yaml), with `prune_keys` set."""
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["prune"].update(prune_keys)
    return raw


def stock(root: Path, role: ModelRole):
    return AutoModelForCausalLM.from_pretrained(root / model_dir(role), local_files_only=True,
                                                use_safetensors=True).eval()


def test_the_pruned_model_keeps_whole_key_value_groups_and_reloads_with_stock_transformers(project):
    root, results = project
    pruned = stock(root, ModelRole.PRUNED)
    assert (pruned.config.num_hidden_layers, pruned.config.num_key_value_heads) == (1, 1)
    assert pruned.config.num_attention_heads == 2 and pruned.config.intermediate_size == 32
    assert results["prune"].parameters < results["teacher"].parameters


def test_evaluate_reports_the_perplexity_a_hand_computation_gives(project):
    root, _ = project
    report = json.loads((root / REPORT).read_text())
    ids = torch.from_numpy(datasets.load_blocks(root, "test", datasets.read_manifest(root))["input_ids"]).long()
    with torch.no_grad():
        logits = stock(root, ModelRole.STUDENT)(input_ids=ids).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
    student = report["models"]["student"]
    assert student["perplexity"] == pytest.approx(math.exp(loss.item()), rel=1e-5)
    assert student["tokens"] == ids[:, 1:].numel() and student["accuracy"] == student["next_token_accuracy"]
    assert report["language"]["student_vs_teacher"]["low"] <= report["language"]["student_vs_teacher"]["high"]


def test_the_onnx_files_score_what_pytorch_scores(project):
    root, results = project
    report = json.loads((root / REPORT).read_text())
    fp32, int8 = results["quantize"].variants["fp32"], results["quantize"].variants["dynamic"]
    assert fp32["perplexity"] == pytest.approx(report["models"]["student"]["perplexity"], rel=1e-4)
    assert int8["file_bytes"] < fp32["file_bytes"] and int8["perplexity_ratio"] < 1.1
    assert all(m["max_abs_diff"] < 1e-4 for m in results["export"].models.values())


def test_the_report_holds_each_models_greedy_continuations_of_the_prompts(project):
    root, _ = project
    report = json.loads((root / REPORT).read_text())
    manifest = datasets.read_manifest(root)
    tokenizer = Tokenizer.from_file(str(datasets.tokenizer_file(root, manifest)))
    prompts = report["language"]["prompts"]
    assert prompts and all(prompts)
    again = greedy_generations(stock(root, ModelRole.STUDENT), tokenizer, prompts, 24, eos_id=manifest["separator"]["id"])
    assert report["language"]["generations"]["student"] == again


def test_wanda_two_four_leaves_two_of_every_four_weights_in_each_decoder_linear(project, tmp_path: Path):
    root, _ = project
    raw = built_params(root, n_m="2:4", method="wanda", transformer={})
    results = run_stages(raw, root, (("prune", prune),))
    assert results["prune"].sparsity == pytest.approx(0.5)
    pruned = stock(root, ModelRole.PRUNED)
    for name, module in pruned.model.layers.named_modules():
        if isinstance(module, torch.nn.Linear):
            groups = (module.weight.detach().numpy().reshape(module.out_features, -1, 4) != 0).sum(-1)
            assert np.all(groups <= 2), name
    run_stages(built_params(root), root, (("prune", prune),))  # the module's pruned model back


def test_quantize_scores_every_test_block_and_refuses_a_subset(project):
    root, results = project
    assert results["quantize"].eval_images == len(datasets.load_blocks(root, "test", datasets.read_manifest(root))
                                                  ["input_ids"])
    raw = built_params(root)
    raw["quantize"]["eval_images"] = 5
    with pytest.raises(ValueError, match=r"quantize.eval_images 5: a language model's files are scored on every test "
                                         r"block"):
        quantize.run(config.validate(raw, stage="quantize"), root)

