"""resources.processes: 2 for distillation on CPU: a tiny causal language model's student, taught by a teacher that
runs on every batch (a language model's logits for every training token are never kept), follows one process's
loss curve under a real torchrun (gloo, 2 ranks), with one MLflow run and one checkpoint; the ranks split the
validation blocks and add up their sums, scoring a model as one process does. The teacher is trained once in one
process; the two distillations run in two copies of that project."""

from __future__ import annotations

import shutil

import pytest

from steps import config, data, distill, teacher, tracking
from steps.compression.training import validation_scores
from steps.core import datasets
from steps.core.layout import metrics_path, model_dir
from steps.core.names import ModelRole
from steps.core.results import DistillResult
from steps.core.torchkit import load_model
from tests.helpers import metric_history as _history
from tests.helpers import the_one_ranks_run
from tests.steps.test_lm_stages import documents, lm_params

pytestmark = pytest.mark.integration  # a real torchrun launch (~15 s of the module's ~30 s): make test, not make check

LOSS_RTOL = 1e-5
"""Per-epoch train loss, 2 ranks vs 1 process: the same blocks per step and the same mean gradient, but each rank
sums its half of the batch's gradient before the all-reduce adds the halves (another float order), and every
step's Adam update carries that difference on; measured 3e-8 after three epochs."""
VAL_RTOL = 1e-9
"""A model's validation perplexity scored by 2 ranks, each its half of the blocks with its sums all-reduced, vs one
process scoring every block: the same per-block float32 logits and a float64 loss sum added in another order."""
STUDENT = {"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64}


def _raw(docs, experiment: str, processes: int) -> dict:
    raw = lm_params(docs)
    raw["threads"] = 1  # two ranks share the two cores
    raw["tracking"]["experiment"] = experiment
    raw["teacher"]["train"].update(epochs=1)
    raw["resources"] = {"processes": processes}
    # a new, smaller Llama taught by the unpruned teacher: no prune stage needed
    raw["distill"].update(student={"name": "hf", "config": STUDENT}, teacher="teacher", alpha=0.5, temperature=2.0)
    raw["distill"]["train"].update(epochs=3, batch_size=6, lr=0.003)
    return raw


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """{processes: (project, result)}: the data and teacher stages once, then distill on 1 and on 2 processes, each
    in its own copy of the project."""
    base = tmp_path_factory.mktemp("lm-ranks")
    docs = documents(base / "docs")
    one = base / "one"
    for name, stage in (("data", data), ("teacher", teacher)):
        stage.run(config.validate(_raw(docs, "teacher", 1), stage=name), one)
    two = base / "two"
    shutil.copytree(one, two, symlinks=True)
    return {processes: (root, distill.run(config.validate(_raw(docs, f"distill-{processes}", processes),
                                                          stage="distill"), root))
            for processes, root in ((1, one), (2, two))}


def test_two_ranks_distill_along_one_process_loss_curve(distilled):
    (root_one, one), (root_two, two) = distilled[1], distilled[2]
    tracking.use_store(root_one)
    loss_one, ppl_one = _history(one.mlflow_run_id, "train_loss"), _history(one.mlflow_run_id, "val_perplexity")
    tracking.use_store(root_two)
    loss_two, ppl_two = _history(two.mlflow_run_id, "train_loss"), _history(two.mlflow_run_id, "val_perplexity")
    assert len(loss_two) == 3 and loss_two[-1] < loss_two[0]  # it learned
    assert loss_two == pytest.approx(loss_one, rel=LOSS_RTOL)
    assert ppl_two == pytest.approx(ppl_one, rel=LOSS_RTOL)
    assert two.val_accuracy == pytest.approx(one.val_accuracy, abs=0.01)


def test_two_ranks_record_one_run_and_one_checkpoint(distilled):
    root, two = distilled[2]
    the_one_ranks_run(root, "distill-2", "distill", two.mlflow_run_id)
    assert DistillResult.read(root / metrics_path("distill")) == two
    student = root / model_dir(ModelRole.STUDENT)
    assert sorted(p.name for p in student.parent.iterdir()) == sorted(["teacher", student.name])
    assert (student / "model.safetensors").is_file()


def test_two_ranks_score_validation_as_one_process_does(distilled):
    """The same models scored by the ranks' halves of the validation blocks and by one process: the teacher (the
    same file in both projects), and the 2-rank student's checkpoint against what its last epoch logged."""
    (_, one), (root, two) = distilled[1], distilled[2]
    assert two.teacher_val_accuracy == one.teacher_val_accuracy
    student, _ = load_model(root, ModelRole.STUDENT)
    alone = validation_scores(student, datasets.load_splits(root, ("val",))["val"])
    tracking.use_store(root)
    assert _history(two.mlflow_run_id, "val_accuracy")[-1] == alone["val_accuracy"] == two.val_accuracy
    assert _history(two.mlflow_run_id, "val_perplexity")[-1] == pytest.approx(alone["val_perplexity"], rel=VAL_RTOL)
