"""The budget search on an hf teacher (issue 26): the uniform shapes a from_pretrained config describes, scored
against the teacher, costed and verified by the same budget machinery as the channel search. Budgets here are
parameter counts (exact, so the outcome does not hang on the machine's timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification

from steps import config, data, distill, evaluate, export, prune, quantize, teacher
from steps.compression import measure
from steps.compression.families.hf.method import Shape
from steps.core.dag import stage
from steps.core.layout import REPORT, metrics_path, model_dir
from steps.core.names import ModelRole
from steps.core.results import PruneResult
from steps.core.stage import run_stage_main
from steps.core.torchkit import load_model
from steps.prune import hf_search
from steps.prune.budget_search import BudgetUnreachable
from tests.helpers import write_params
from tests.steps.test_hf_teacher import TINY_BERT, raw_params, texts

pytestmark = pytest.mark.usefixtures("one_thread")

BERT = {**TINY_BERT, "num_attention_heads": 4}
"""2 layers, hidden 32, 4 heads of 8, FFN 64."""
QUICK = {"precisions": ["fp32"], "candidates": 3, "widths": [0.5], "search_repeats": 72, "verify_repeats": 72,
         "verify_windows": 2, "warmup": 1, "search_seconds": 0, "verify_seconds": 0}


def budgeted(root: Path, **limits) -> dict:
    raw = raw_params(root / "mail.csv", {"name": "hf", "config": BERT})
    raw["prune"]["finetune"].update(epochs=1, batch_size=16, lr=0.005)
    raw["prune"]["transformer"] = {"importance": "output_norm", "depth_metric": "block_influence"}
    raw["target"] = {**limits, "search": QUICK}
    return raw


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A text project whose data and teacher stages ran (the teacher: BERT above)."""
    root = tmp_path_factory.mktemp("hf_search")
    texts(root)
    write_params(root, budgeted(root))
    run_stage_main("data", data.run, ["--root", str(root)])
    run_stage_main("teacher", teacher.run, ["--root", str(root)])
    return root


def test_the_grid_holds_each_uniform_shape_once_the_hidden_width_following_the_heads():
    shapes = hf_search.grid(Shape(layers=2, heads=4, intermediate=64, hidden=32), 8, [0.5, 0.25], 1)
    assert len(shapes) == len(set(shapes)) == 2 * 3 * 3  # depth 1/4 of 2 layers keeps 2: the same shapes as 0
    assert shapes[0] == Shape(2, 4, 64, 32) and Shape(1, 1, 16, 8) in shapes
    assert all(s.hidden == s.heads * 8 for s in shapes)


def test_a_parameter_budget_gets_the_most_accurate_fitting_shape_saved_as_a_stock_folder(trained: Path):
    full = measure.parameters(load_model(trained, ModelRole.TEACHER)[0])
    limit = int(full * 0.8)
    write_params(trained, budgeted(trained, parameters=limit))
    run_stage_main("prune", prune.run, ["--root", str(trained)])  # what python -m steps.prune runs
    result = PruneResult.read(trained / metrics_path("prune"))
    search = result.search
    assert result.method == "search" and search["layer_widths"] == {"layers": 2, "heads": 4, "intermediate": 64}
    fitting = [p for p in search["frontier"] if p["fits"]]
    assert {p["fits"] for p in search["frontier"]} == {True, False}  # the teacher's own shape, at least, is over
    assert all(p["parameters"] <= limit * 0.9 for p in fitting)  # the search aims at the limit less the margin
    candidates = search["candidates"]
    assert len(candidates) == min(3, len(fitting)) >= 2
    best = min(fitting, key=lambda p: p["kl_to_teacher"])  # the closest to the teacher is verified first
    assert candidates[0]["widths"] == best["widths"]
    chosen = search["chosen"]
    assert chosen["val_accuracy"] == max(c["val_accuracy"] for c in candidates if c["fits"])
    assert chosen["precision"] == "fp32" and chosen["latency_p95_high_ms"] > 0  # what quantize and evaluate read
    assert chosen["parameters"] == result.parameters <= limit
    # the heat-map's rows: each axis cut alone, scored against the teacher's accuracy before any fine-tuning
    assert {axis: sorted(map(int, cuts)) for axis, cuts in search["sensitivity"].items()} == {
        "layers": [1], "heads": [2], "intermediate": [32]}
    params = config.validate(budgeted(trained, parameters=limit), stage="prune")
    assert quantize.deployment(params, trained)[1] == "fp32"
    folder = trained / model_dir(ModelRole.PRUNED)
    stock = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    c, w = stock.config, chosen["widths"]
    assert (c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (w["layers"], w["heads"],
                                                                                  w["intermediate"])
    assert c.hidden_size == w["heads"] * 8 and measure.parameters(stock) == chosen["parameters"]


def test_the_searched_model_is_distilled_deployed_and_re_measured_on_the_budgets_terms(trained: Path):
    """The stages after prune take the searched hf model as they take a searched CNN: the teacher distills into it,
    and evaluate times its deployable file (token ids) beside the teacher's and judges each limit."""
    full = measure.parameters(load_model(trained, ModelRole.TEACHER)[0])
    raw = budgeted(trained, parameters=int(full * 0.8))
    raw["distill"].update(student={"name": "pruned"}, teacher="teacher")
    raw["distill"]["train"].update(epochs=1, batch_size=16)
    write_params(trained, raw)
    for name, step in (("prune", prune), ("distill", distill), ("export", export), ("quantize", quantize),
                       ("evaluate", evaluate)):
        run_stage_main(name, step.run, ["--root", str(trained)])
    chosen = PruneResult.read(trained / metrics_path("prune")).search["chosen"]
    report = json.loads((trained / REPORT).read_text())["target"]
    assert report["verdicts"] == {"parameters": "pass"} and report["measured"]["parameters"] == chosen["parameters"]
    assert report["measured"]["speedup"] > 0 and report["measured"]["windows"] == QUICK["verify_windows"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*")} if folder.exists() else {}


def test_an_impossible_budget_is_refused_naming_the_closest_shape(trained: Path):
    params = config.validate(budgeted(trained, parameters=10), stage="prune")
    folder = trained / model_dir(ModelRole.PRUNED)
    before = _files(folder)
    with pytest.raises(BudgetUnreachable, match=r"no uniform shape of the hf teacher meets target "
                                                r"\{'parameters': 10\}: the closest, 1 layer\(s\), 2 head\(s\) "
                                                r"\(hidden 16\), FFN 32 in fp32: .* over by parameters [\d.e+]+ > 9 "):
        prune.run(params, trained)
    assert _files(folder) == before  # nothing was saved


def test_under_a_budget_the_prune_stage_of_an_hf_project_declares_the_search_and_its_criteria(tmp_path: Path):
    params = config.validate(budgeted(tmp_path, parameters=1000), stage="prune")
    code = stage("prune").code(params)
    for module in ("steps/prune/hf_search.py", "steps/compression/families/hf/importance.py",
                   "steps/compression/criteria/blocks.py"):
        assert module in code, module
