"""A ViT teacher and ViT student through the stages on tiny synthetic data: teacher, transformer pruning
(heads, MLP width, depth; iterative), MiniLM/TinyBERT distillation, export parity and int8 quantization."""

from __future__ import annotations

import pytest
import torch

from steps import distill, export, prune, quantize
from steps.compression import measure
from steps.compression.families import family_of
from steps.core.datasets import load_splits
from steps.core.names import ModelRole
from steps.core.torchkit import load_model
from tests.helpers import Snapshots, tiny_params, variant

D, HEADS, DEPTH, HIDDEN = 16, 2, 2, 32  # the tiny teacher: head_dim 8, MLP 32
VIT_TEACHER = {"name": "vit", "patch_size": 7, "embed_dim": D, "depth": DEPTH, "heads": HEADS, "mlp_ratio": 2.0,
               "pool": "mean", "channels": [], "hidden": []}
VIT_STUDENT = {"name": "vit", "patch_size": 7, "embed_dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2.0,
               "pool": "mean", "channels": [], "hidden": []}
TRAIN = {"epochs": 6, "lr": 0.01, "lr_schedule": "warmup_cosine"}  # a tiny ViT needs these on the synthetic data
STUDENT_TRAIN = {"epochs": 8, "lr": 0.01, "lr_schedule": "constant"}  # learnt 100% in 3 of 3 seeds here


def vit_params(idx_dir) -> dict:
    p = tiny_params(idx_dir, experiment="vit-stage-tests")
    p["teacher"]["arch"] = VIT_TEACHER
    p["teacher"]["train"].update(TRAIN)
    p["distill"]["train"].update(STUDENT_TRAIN)
    p["promote"]["max_class_drop_pt"] = None  # per-class recall on 200 synthetic test images is noise
    p["prune"].update(method="transformer", schedule="linear", transformer={"heads": 0.5})
    p["distill"].update(student=VIT_STUDENT, attention_maps={"weight": 1.0, "layer_map": "uniform"},
                        hidden_states={"weight": 1.0, "layer_map": "last"})
    p["quantize"].update(methods=["dynamic", "static"], calibration_images=64, max_accuracy_drop=1.0)
    return p


@pytest.fixture(scope="module")
def vit_after(tmp_path_factory, idx_dir):
    from steps import config

    return Snapshots(tmp_path_factory.mktemp("vit-stages"), config.validate(vit_params(idx_dir))).restore


@pytest.fixture(scope="module")
def params(idx_dir):
    from steps import config

    return config.validate(vit_params(idx_dir))


def _block_params(heads: int, mlp: int, d: int = D, head_dim: int = D // HEADS) -> int:
    """Parameters of one pre-norm block: 2 LayerNorms, qkv, proj, fc1, fc2."""
    width = heads * head_dim
    return 4 * d + 3 * width * (d + 1) + (width * d + d) + mlp * (d + 1) + (mlp * d + d)


def _pruned(root, teacher_params: int):
    model, spec = load_model(root, ModelRole.PRUNED)
    x = load_splits(root, ("test",))["test"].x[:4]
    assert model(x).shape == (4, 10)
    return model, spec, teacher_params - measure.parameters(model)


def test_head_pruning_is_iterative_and_reloads_with_fewer_heads(vit_after, params):
    root = vit_after("teacher")
    teacher, _ = load_model(root, ModelRole.TEACHER)
    result = prune.run(params, root)
    assert [p["round"] for p in result.curve] == [1, 2] and result.curve[-1]["target"] == pytest.approx(0.5)
    model, spec, removed = _pruned(root, measure.parameters(teacher))
    assert spec.block_heads == [1, 1] and [b.attn.num_heads for b in model.blocks] == [1, 1]
    assert removed == DEPTH * (_block_params(HEADS, HIDDEN) - _block_params(1, HIDDEN))
    assert result.parameters == measure.parameters(model)


def test_mlp_pruning_rounds_widths_and_reloads(vit_after, params):
    root = vit_after("teacher")
    teacher, _ = load_model(root, ModelRole.TEACHER)
    width = variant(params, prune={"transformer": {"mlp": 0.6}, "round_to": 8})
    prune.run(width, root)
    model, spec, removed = _pruned(root, measure.parameters(teacher))
    # 40% of 32 is 12.8 -> 13, rounded down to a multiple of 8: 8, from the original width in both rounds
    assert spec.block_mlp == [8, 8] and [b.mlp.fc1.out_features for b in model.blocks] == [8, 8]
    assert removed == DEPTH * (_block_params(HEADS, HIDDEN) - _block_params(HEADS, 8))


def test_depth_pruning_drops_a_block_and_reloads(vit_after, params):
    root = vit_after("teacher")
    teacher, _ = load_model(root, ModelRole.TEACHER)
    shallow = variant(params, prune={"transformer": {"depth": 0.5, "depth_metric": "block_influence"}})
    prune.run(shallow, root)
    model, spec, removed = _pruned(root, measure.parameters(teacher))
    assert spec.depth == 1 and len(model.blocks) == 1
    assert removed == _block_params(HEADS, HIDDEN)


def test_transformer_pruning_refuses_a_cnn_teacher(project_after, stage_params):
    root = project_after("teacher")
    wrong = variant(stage_params, prune={"method": "transformer", "transformer": {"heads": 0.5}})
    with pytest.raises(ValueError, match="prune.method transformer cannot prune a CNN"):
        prune.run(wrong, root)


def test_vit_student_learns_attention_maps_and_hidden_states(vit_after, params):
    root = vit_after("prune")
    result = distill.run(params, root)
    student, spec = load_model(root, ModelRole.STUDENT)
    assert spec.name == "vit" and spec.embed_dim == 16 and len(student.blocks) == 1
    assert result.val_accuracy > 0.3


def test_cnn_teacher_to_vit_student_matches_pooled_features(project_after, stage_params):
    root = project_after("prune")
    from_cnn = variant(stage_params, distill={"teacher": "teacher", "student": VIT_STUDENT,
                                              "hidden_states": {"weight": 1.0, "layer_map": "uniform"},
                                              "train": {**stage_params.distill.train.model_dump(), **STUDENT_TRAIN}})
    cnn = load_model(root, ModelRole.TEACHER)[0]
    assert family_of(cnn).pooled_layer(cnn) == "classifier.2"  # the hidden ReLU
    assert distill.run(from_cnn, root).val_accuracy > 0.3
    maps = variant(from_cnn, distill={"attention_maps": {"weight": 1.0, "layer_map": "last"}})
    with pytest.raises(ValueError, match="distill.attention_maps needs a teacher whose family has attention maps; "
                                         "the teacher model is a cnn"):
        distill.run(maps, root)


def test_vit_export_parity_and_int8(vit_after, params):
    root = vit_after("distill")
    exported = export.run(params, root)
    assert set(exported.models) == {r.value for r in ModelRole}
    assert all(m["argmax_mismatches"] == 0 and m["max_abs_diff"] <= params.export.parity_atol
               for m in exported.models.values())
    result = quantize.run(params, root)
    assert set(result.variants) == {"fp32", "dynamic", "static"}
    # int8 keeps predictions close on this easy data (the tiny model is far from saturated)
    assert all(v["accuracy"] > 0.3 and v["file_bytes"] > 0 for v in result.variants.values())


def test_a_pruned_vit_reloads_bit_identically(vit_after, params):
    root = vit_after("prune")
    model, _ = load_model(root, ModelRole.PRUNED)
    again, _ = load_model(root, ModelRole.PRUNED)
    x = load_splits(root, ("test",))["test"].x[:8]
    with torch.no_grad():
        assert torch.equal(model.eval()(x), again.eval()(x))
