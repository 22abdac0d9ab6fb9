import pytest
import torch
from torch.nn import functional as F

from steps import config, distill
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec
from steps.config.distill import DistillTerm
from steps.core.names import ModelRole
from steps.core.torchkit import load_model
from steps.distill.objective import block_pairs, build_objective
from tests.helpers import default_params, variant

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


def test_the_pruned_model_itself_is_the_student_in_any_family(project_after, stage_params):
    root = project_after("prune")
    pruned, pruned_spec = load_model(root, ModelRole.PRUNED)
    result = distill.run(variant(stage_params, distill={"teacher": "teacher", "student": {"name": "pruned"}}), root)
    assert result.teacher == "teacher"
    student, spec = load_model(root, ModelRole.STUDENT)
    assert spec == pruned_spec  # the pruned cnn's shapes, not distill.student's
    assert [p.shape for p in student.parameters()] == [p.shape for p in pruned.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(student.parameters(), pruned.parameters(), strict=True))


def test_distill_names_a_layer_that_does_not_exist(project_after, stage_params):
    root = project_after("prune")
    bad = variant(stage_params, distill={
        "student": CNN_STUDENT,
        "hints": {"weight": 1.0, "layers": [{"student": "features.99", "teacher": "features.6"}]},
    })
    with pytest.raises(ValueError, match="features.99"):
        distill.run(bad, root)


# ---- the objective from params (no project needed) ----------------------------------------------


def test_the_default_objective_is_the_kd_loss_bit_for_bit():
    """params.yaml's distill (T 4, alpha 0.5, no hints): soft targets + hard labels, summed as KDLoss did."""
    cfg = config.validate(default_params()).distill
    objective = build_objective(cfg, None, None, "pruned", None)
    assert [t.name for t in cfg.terms] == ["soft_targets", "hard_labels"] and objective.student_layers == []
    gen = torch.Generator().manual_seed(0)
    s, t, y = torch.randn(16, 10, generator=gen), torch.randn(16, 10, generator=gen), torch.arange(16) % 10
    temp, alpha = cfg.temperature, cfg.alpha
    soft = F.kl_div(F.log_softmax(s / temp, dim=1), F.log_softmax(t / temp, dim=1), reduction="batchmean",
                    log_target=True)
    assert torch.equal(objective(s, t, y), alpha * temp * temp * soft + (1 - alpha) * F.cross_entropy(s, y))


def test_params_map_onto_the_term_list_in_order():
    cfg = config.validate(default_params()).distill.model_copy(update={
        "hints": config.FeatureLossConfig(weight=0.5, layers=[{"student": "a", "teacher": "b"}]),
        "attention": config.FeatureLossConfig(weight=2.0, layers=[{"student": "c", "teacher": "d"}])})
    assert [(t.name, t.source, t.weight) for t in cfg.terms] == [
        ("soft_targets", "distill.alpha", 0.5), ("hard_labels", "distill.alpha", 0.5),
        ("hints", "distill.hints", 0.5), ("attention_transfer", "distill.attention", 2.0)]
    assert cfg.terms[0].options == {"temperature": 4.0}


def vit(depth: int, dim: int = 8):
    return build(ModelSpec(name="vit", embed_dim=dim, depth=depth, heads=2))


def cnn():
    return build(ModelSpec(name="cnn", channels=[4, 8], hidden=[16]))


def test_block_terms_pair_the_blocks_the_families_name():
    maps = DistillTerm(name="attention_maps", source="distill.attention_maps", weight=1.0, layer_map="uniform")
    assert block_pairs(maps, "attention_maps", vit(2), vit(4), "teacher") == [
        ("blocks.0.attn.attn_probs", "blocks.1.attn.attn_probs"), ("blocks.1.attn.attn_probs", "blocks.3.attn.attn_probs")]
    hidden = DistillTerm(name="hidden_states", source="distill.hidden_states", weight=1.0, layer_map="last")
    assert block_pairs(hidden, "hidden_states", vit(2), vit(4), "teacher") == [("blocks.1", "blocks.3")]
    assert block_pairs(hidden, "hidden_states", vit(2), cnn(), "teacher") == [("pool", "classifier.2")]


def test_block_terms_refuse_a_family_without_those_blocks_naming_the_key_and_family():
    maps = DistillTerm(name="attention_maps", source="distill.attention_maps", weight=1.0)
    with pytest.raises(ValueError, match="distill.attention_maps needs a student whose family has attention maps; "
                                         "the student is a cnn"):
        block_pairs(maps, "attention_maps", cnn(), vit(2), "pruned")
    with pytest.raises(ValueError, match="distill.attention_maps needs a teacher whose family has attention maps; "
                                         "the pruned model is a cnn"):
        block_pairs(maps, "attention_maps", vit(2), cnn(), "pruned")
    hidden = DistillTerm(name="hidden_states", source="distill.hidden_states", weight=1.0)
    with pytest.raises(ValueError, match="distill.hidden_states needs a student whose family has hidden states"):
        block_pairs(hidden, "hidden_states", cnn(), vit(2), "pruned")
