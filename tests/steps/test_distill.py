import pytest

from steps import distill
from steps.core.names import ModelRole
from steps.core.torchkit import load_model
from tests.helpers import variant

CNN_STUDENT = {"name": "cnn", "channels": [4, 8], "hidden": [16], "batch_norm": True}


def test_distill_trains_a_different_architecture(project_after, stage_params):
    root = project_after("prune")
    result = distill.run(stage_params, root)
    assert result.val_accuracy > 0.3 and result.teacher == "pruned"
    _, spec = load_model(root, ModelRole.STUDENT)
    assert spec.name == "mlp"


def test_distill_with_hints_and_attention_from_the_unpruned_teacher(project_after, stage_params):
    root = project_after("prune")
    featured = variant(stage_params, distill={
        "teacher": "teacher", "student": CNN_STUDENT,
        "hints": {"weight": 1.0, "layers": [{"student": "features.6", "teacher": "features.6"}]},
        "attention": {"weight": 10.0, "layers": [{"student": "features.2", "teacher": "features.2"}]},
    })
    result = distill.run(featured, root)
    assert result.teacher == "teacher"
    assert result.val_accuracy > 0.3


def test_distill_names_a_layer_that_does_not_exist(project_after, stage_params):
    root = project_after("prune")
    bad = variant(stage_params, distill={
        "student": CNN_STUDENT,
        "hints": {"weight": 1.0, "layers": [{"student": "features.99", "teacher": "features.6"}]},
    })
    with pytest.raises(ValueError, match="features.99"):
        distill.run(bad, root)
