"""A user's own model through the whole pipeline, and a teacher taken from a registered version as it is."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from steps import teacher, tracking
from steps.compression import measure
from steps.core.layout import model_path, onnx_path, spec_path
from steps.core.names import ModelRole, Tag
from steps.core.results import DistillResult
from steps.core.torchkit import load_model
from tests.flows.test_sources_flow import LONGER, project, rgb_folder, run_pipeline
from tests.helpers import variant

USER_MODULE = '''
from torch import nn


def make(width=16, classes=3):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))
'''


def test_custom_model_pruned_exported_reloaded_promoted_then_teacher_from_the_registry(tmp_path):
    folder = rgb_folder(tmp_path / "photos", size=12)
    custom = {"name": "custom", "factory": "acme_models:make", "kwargs": {"width": 16}}
    student = {"name": "cnn", "channels": [4, 8], "hidden": [16], "batch_norm": True}
    root, params = project(tmp_path, {"source": "image_folder", "path": str(folder)},
                           teacher={"arch": custom, "train": LONGER},
                           prune={"method": "structured", "target_sparsity": 0.5, "rounds": 1},
                           distill={"student": student, "train": LONGER})
    (root / "acme_models.py").write_text(USER_MODULE)  # beside params.yaml, as a user's project has it

    decision = run_pipeline(root, params)
    spec = (root / spec_path(ModelRole.PRUNED)).read_text()
    assert '"factory": "acme_models:make"' in spec and '"width": 16' in spec
    pruned, _ = load_model(root, ModelRole.PRUNED)  # rebuilt by the user's factory, shrunk to the weights
    teacher_model, _ = load_model(root, ModelRole.TEACHER)
    assert pruned[0].out_channels < 16 and measure.parameters(pruned) < measure.parameters(teacher_model)
    assert (root / onnx_path(ModelRole.PRUNED)).is_file()
    assert decision.version == 1

    # The registered student becomes the next run's teacher, kept as it is (zero epochs).
    uri = f"models:/{params.promote.model_name}@{decision.alias}"
    from_registry = variant(params, teacher={"arch": student, "init": {"from": uri},
                                             "train": {**LONGER, "epochs": 0}})
    result = teacher.run(from_registry, root)
    tags = tracking.model_version(params.promote.model_name, 1).tags
    assert result.init_uri == f"models:/{params.promote.model_name}/1" and result.epochs == 0
    assert result.init_sha256 == tags[Tag.MODEL_SHA256]
    registered = load_file(str(root / model_path(ModelRole.STUDENT)))
    kept = load_file(str(root / model_path(ModelRole.TEACHER)))
    assert registered.keys() == kept.keys() and all(torch.equal(registered[k], kept[k]) for k in kept)
    assert result.val_accuracy == DistillResult.read(root / "metrics/distill.json").val_accuracy

    second = run_pipeline(root, from_registry)
    new_tags = tracking.model_version(params.promote.model_name, second.version).tags
    assert new_tags[Tag.TEACHER_INIT] == result.init_uri
    assert new_tags[Tag.TEACHER_INIT_SHA256] == result.init_sha256

    from steps.registry.audit.records import teacher_init_check

    # The audit's check on its own (the full audit also wants git and DVC lineage this temp project lacks).
    rows = teacher_init_check(root, new_tags, tmp_path / "audit")
    assert [(r.name, r.passed) for r in rows] == [("teacher_init.sha256", True)]
    forged = {**new_tags, Tag.TEACHER_INIT_SHA256: "0" * 64}
    assert teacher_init_check(root, forged, tmp_path / "audit2")[0].passed is False
