import logging

import pytest
import torch
from mlflow.tracking import MlflowClient

from steps import config, prune, tracking
from steps.compression import choices, measure, progress
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec
from steps.core.datasets import load_splits
from steps.core.names import ModelRole
from steps.core.torchkit import load_model
from tests.helpers import variant


def test_prune_reaches_target_with_a_curve(project_after, stage_params, caplog):
    root = project_after("teacher")
    with caplog.at_level(logging.INFO, logger=progress.LOGGER_NAME):
        result = prune.run(stage_params, root)
    assert result.sparsity == pytest.approx(stage_params.prune.target_sparsity, abs=1e-3)
    assert [p["round"] for p in result.curve] == [1, 2]
    model, _ = load_model(root, ModelRole.PRUNED)
    assert not any(k.endswith("_mask") for k in model.state_dict())
    tracking.use_store(root)
    sparsity_curve = MlflowClient().get_metric_history(result.mlflow_run_id, "sparsity")
    assert [m.value for m in sorted(sparsity_curve, key=lambda m: m.step)][0] == 0.0
    assert len(sparsity_curve) == stage_params.prune.rounds + 1
    # what a person saw meanwhile: each round's fine-tuning epoch, then the round with what it measured
    lines = [r.getMessage() for r in caplog.records
             if r.name == progress.LOGGER_NAME and r.getMessage().startswith("prune")]  # not the snapshot's teacher
    assert [line.split(", ")[0] for line in lines] == ["prune round 1/2 @ 43.8%: epoch 1/1", "prune: round 1/2",
                                                       "prune round 2/2 @ 50.0%: epoch 1/1", "prune: round 2/2"]
    assert f"val_accuracy {result.curve[-1]['val_accuracy']:.4f}" in lines[-1]


def test_structured_prune_removes_channels(project_after, stage_params):
    root = project_after("teacher")
    teacher_model, _ = load_model(root, ModelRole.TEACHER)
    structured = variant(stage_params, prune={"method": "structured", "importance": "taylor", "target_sparsity": 0.5,
                                              "scope": "layer", "schedule": "linear"})
    result = prune.run(structured, root)
    pruned, spec = load_model(root, ModelRole.PRUNED)
    assert spec.channels == [8, 16]  # the spec stays the original; the loader shrinks layers to the saved shapes
    assert pruned.features[0].out_channels < teacher_model.features[0].out_channels
    assert result.parameters == measure.parameters(pruned) < measure.parameters(teacher_model)
    x = load_splits(root, ("test",))["test"].x[:4]
    assert measure.macs(pruned, x[:1]) < measure.macs(teacher_model, x[:1])
    assert pruned(x).shape == (4, 10)


def test_structured_prune_rounds_widths_without_compounding_over_rounds(project_after, stage_params):
    root = project_after("teacher")
    rounded = variant(stage_params, prune={"method": "structured", "importance": "l1", "target_sparsity": 0.3,
                                           "scope": "layer", "schedule": "linear", "rounds": 2, "round_to": 4})
    prune.run(rounded, root)
    pruned, _ = load_model(root, ModelRole.PRUNED)
    # 8/16 channels and 32 neurons keep 70%, rounded down to multiples of 4, from the ORIGINAL widths: 4/8 and 20.
    # Rounding each round's current widths instead would end at 4/8 and 16.
    assert [pruned.features[0].out_channels, pruned.features[4].out_channels] == [4, 8]
    assert pruned.classifier[1].out_features == 20


def test_a_method_the_teachers_family_cannot_use_is_refused_naming_both():
    torch.manual_seed(0)
    cnn = build(ModelSpec(name="cnn", channels=[4], hidden=[8]))
    transformer = config.PruneConfig.model_validate({"method": "transformer", "target_sparsity": 0.5, "rounds": 1,
                                                     "transformer": {"heads": 0.5},
                                                     "finetune": {"epochs": 1, "batch_size": 8, "lr": 0.01}})
    with pytest.raises(ValueError, match=r"prune.method transformer cannot prune a CNN teacher \(the cnn family\): "
                                         r"use prune.method magnitude or structured"):
        prune.method_for(cnn, transformer)
    structured = transformer.model_copy(update={"method": "structured"})
    assert isinstance(prune.method_for(cnn, structured), choices.PRUNE_METHODS["structured"])
