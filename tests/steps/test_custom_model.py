"""The custom architecture and teacher.init refuse what cannot work, naming the layer, factory or file."""

import pytest
import torch
from torch import nn

from steps import config, teacher
from steps.compression import structured
from steps.compression.families.custom.config import CustomConfig
from steps.compression.families.custom.model import CustomModelError, build_custom
from steps.compression.families.spec import ModelSpec
from steps.core.torchkit import build_for, spec_from
from tests.helpers import variant


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(8, 1, 1))

    def forward(self, x):
        return x * self.scale


def test_a_layer_structured_pruning_cannot_shrink_is_named():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.LayerNorm([8, 6, 6]), nn.Flatten(), nn.Linear(288, 3))
    with pytest.raises(CustomModelError, match=r"layer '1' \(LayerNorm"):
        structured.prune_channels(model, torch.zeros(2, 1, 8, 8), 0.5, "l1")
    raw = nn.Sequential(nn.Conv2d(1, 8, 3), Scaled(), nn.Flatten(), nn.Linear(288, 3))
    with pytest.raises(CustomModelError, match=r"layer '1' \(Scaled, parameters \['scale'\]\)"):
        structured.prune_channels(raw, torch.zeros(2, 1, 8, 8), 0.5, "l1")


def test_factory_errors_name_the_factory():
    with pytest.raises(CustomModelError, match="cannot import 'no_such_module'"):
        build_custom(ModelSpec(name="custom", factory="no_such_module:make"))
    with pytest.raises(CustomModelError, match="has no function 'nothing'"):
        build_custom(ModelSpec(name="custom", factory="tests.custom_model:nothing"))
    with pytest.raises(CustomModelError, match="kwargs \\['depth'\\] do not fit"):
        build_custom(ModelSpec(name="custom", factory="tests.custom_model:small_net", kwargs={"depth": 3}))


def test_a_model_with_the_wrong_class_count_is_refused(project_after, stage_params):
    root = project_after("data")
    arch = CustomConfig(name="custom", factory="tests.custom_model:small_net", kwargs={"classes": 4})
    spec = spec_from(arch, root)
    assert spec.num_classes == len(stage_params.data.class_names) and spec.input_shape == [1, 28, 28]
    with pytest.raises(ValueError, match=r"returns \[2, 4\].*10 classes"):
        build_for(root, spec, torch.zeros(2, 1, 28, 28))


def test_zero_epochs_need_init_and_init_must_exist(project_after, stage_params, tmp_path):
    raw = stage_params.model_dump(mode="json", by_alias=True)
    raw["teacher"]["train"]["epochs"] = 0
    with pytest.raises(config.ConfigError, match="needs teacher.init"):
        config.validate(raw)
    root = project_after("data")
    missing = variant(stage_params, teacher={"init": {"from": str(tmp_path / "gone.safetensors")},
                                             "train": {**stage_params.teacher.train.model_dump(), "epochs": 0}})
    with pytest.raises(teacher.InitError, match="gone.safetensors does not exist"):
        teacher.run(missing, root)
    unknown = variant(missing, teacher={"init": {"from": "models:/never-registered@champion"}})
    with pytest.raises(teacher.InitError, match="never-registered"):
        teacher.run(unknown, root)
