"""The weighted sum of named terms: built by name from the registry, summed in order, its learned parts
drawn in the order they always were, and models' features probed once."""

import copy
import sys

import pytest
import torch
from torch import nn

from steps.compression import choices
from steps.compression.distillation.features import FeatureTap
from steps.compression.distillation.hard_labels import HardLabels
from steps.compression.distillation.objective import TermSpec, WeightedSum, WeightedTerm, build
from steps.compression.families.spec import ModelSpec
from steps.compression.families import build as build_model

pytestmark = pytest.mark.usefixtures("one_thread")

X = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.arange(6) % 10
VIT_TEACHER = ModelSpec(name="vit", embed_dim=16, depth=4, heads=4)
VIT_STUDENT = ModelSpec(name="vit", embed_dim=8, depth=2, heads=2)


def kd(temperature: float = 4.0, alpha: float = 0.5) -> list[TermSpec]:
    return [TermSpec("soft_targets", alpha, options={"temperature": temperature}), TermSpec("hard_labels", 1 - alpha)]


def models(teacher_spec: ModelSpec, student_spec: ModelSpec):
    torch.manual_seed(0)
    return build_model(teacher_spec).eval(), build_model(student_spec).train()


def cnn(channels: list[int], hidden: list[int]) -> nn.Module:
    return build_model(ModelSpec(name="cnn", channels=channels, hidden=hidden))


def blocks(kind: str, pairs):
    name = {"attention_maps": "blocks.{}.attn.attn_probs", "hidden_states": "blocks.{}"}[kind]
    return [(name.format(s), name.format(t)) for s, t in pairs]


def one_batch(objective: WeightedSum, teacher, student, x=X, y=Y):
    with torch.no_grad(), FeatureTap(teacher, objective.teacher_layers) as t_tap:
        t_logits = teacher(x)
    with FeatureTap(student, objective.student_layers) as s_tap:
        s_logits = student(x)
    args = (s_logits, t_logits, y, dict(s_tap.outputs), dict(t_tap.outputs))
    return objective(*args), objective.summands(*args)


# ---- CNN: hints and attention transfer ----------------------------------------------------------


def test_cnn_hints_and_attention_end_to_end():
    torch.manual_seed(0)
    teacher, student = cnn([8, 16], [16]), cnn([4, 8], [8])
    x, y = X[:4], torch.arange(4)
    bn_stats = teacher.features[1].running_mean.clone()
    hints = [("features.6", "features.6"), ("classifier.2", "classifier.2")]  # 2nd ReLU; hidden ReLU
    attention = [("features.2", "features.2"), ("features.7", "features.7")]  # 1st ReLU; last pool
    objective = build([*kd(4.0, 0.9), TermSpec("hints", 0.5, hints), TermSpec("attention_transfer", 10.0, attention)],
                      student, teacher, x[:1])
    assert torch.equal(teacher.features[1].running_mean, bn_stats)  # probing ran in eval mode
    regressors = [h.regressor for h in objective.terms["hints"]]
    assert (regressors[0].in_channels, regressors[0].out_channels) == (8, 16) and isinstance(regressors[1], nn.Linear)
    assert objective.student_layers == ["features.6", "classifier.2", "features.2", "features.7"]
    opt = torch.optim.Adam([*student.parameters(), *objective.parameters()], lr=1e-3)
    loss, parts = one_batch(objective, teacher, student, x, y)
    assert list(parts) == ["soft_targets", "hard_labels", "hints", "attention_transfer"]
    assert parts["hints"] > 0 and parts["attention_transfer"] > 0
    # the sum in the order the combined objective always took: KD, then each term's weight times its pair sum
    with torch.no_grad(), FeatureTap(teacher, objective.teacher_layers) as t_tap:
        t_logits = teacher(x)
    with FeatureTap(student, objective.student_layers) as s_tap:
        s_logits = student(x)
    s, t = s_tap.outputs, t_tap.outputs
    h = [term(s[a], t[b]) for term, (a, b) in zip(objective.terms["hints"], hints)]
    at = [term(s[a], t[b]) for term, (a, b) in zip(objective.terms["attention_transfer"], attention)]
    soft, hard = objective.terms["soft_targets"][0](s_logits, t_logits), HardLabels()(s_logits, y)
    assert torch.equal(loss, 0.9 * 4.0 * 4.0 * soft + (1 - 0.9) * hard + 0.5 * (h[0] + h[1]) + 10.0 * (at[0] + at[1]))
    loss.backward()
    assert student.features[0].weight.grad.abs().sum() > 0
    assert regressors[0].weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    opt.step()


def test_build_names_a_bad_layer_and_a_pair_it_cannot_compare():
    teacher, student = cnn([8, 16], []), cnn([4, 8], [])
    with pytest.raises(ValueError, match=r"'features\.42'"):
        build([*kd(), TermSpec("hints", 1.0, [("features.2", "features.42")])], student, teacher, X[:1])
    with pytest.raises(ValueError, match=r"attention_transfer pair \('classifier.0', 'classifier.0'\).*4-D"):
        build([*kd(), TermSpec("attention_transfer", 1.0, [("classifier.0", "classifier.0")])], student, teacher, X[:1])


def test_a_feature_missing_at_forward_is_named():
    teacher, student = cnn([8, 16], []), cnn([4, 8], [])
    objective = build([*kd(2.0), TermSpec("attention_transfer", 1.0, [("features.2", "features.2")])],
                      student, teacher, X[:1])
    logits = torch.zeros(6, 10)
    with pytest.raises(ValueError, match="no student feature 'features.2'"):
        objective(logits, logits, Y, {}, {"features.2": torch.ones(6, 4, 7, 7)})


# ---- ViT: attention maps and hidden states ------------------------------------------------------


def test_vit_teacher_to_smaller_vit_student():
    teacher, student = models(VIT_TEACHER, VIT_STUDENT)
    pairs = [(0, 1), (1, 3)]
    objective = build([*kd(), TermSpec("attention_maps", 1.0, blocks("attention_maps", pairs)),
                       TermSpec("hidden_states", 0.5, blocks("hidden_states", pairs))], student, teacher, X[:2])
    assert [h.project.weight.shape for h in objective.terms["hidden_states"]] == [(16, 8), (16, 8)]
    loss, parts = one_batch(objective, teacher, student)
    assert list(parts) == ["soft_targets", "hard_labels", "attention_maps", "hidden_states"]
    assert parts["attention_maps"] > 0 and parts["hidden_states"] > 0
    assert loss.item() == pytest.approx(sum(v.item() for v in parts.values()), rel=1e-5)
    loss.backward()
    assert student.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(h.project.weight.grad.abs().sum() > 0 for h in objective.terms["hidden_states"])
    assert all(p.grad is None for p in teacher.parameters())


def test_cnn_teacher_to_vit_student_on_pooled_features():
    teacher, student = models(ModelSpec(name="cnn", channels=[4, 8], hidden=[16]), VIT_STUDENT)
    objective = build([*kd(4.0, 0.9), TermSpec("hidden_states", 1.0, [("pool", "classifier.2")])],
                      student, teacher, X[:2])
    loss, parts = one_batch(objective, teacher, student)
    assert parts["hidden_states"] > 0
    loss.backward()
    assert student.patch_embed.weight.grad.abs().sum() > 0
    assert objective.terms["hidden_states"][0].project.weight.grad.abs().sum() > 0


def test_transformer_terms_vanish_when_the_student_is_the_teacher():
    teacher, _ = models(VIT_TEACHER, VIT_STUDENT)
    student = copy.deepcopy(teacher)
    pairs = [(i, i) for i in range(4)]
    objective = build([*kd(4.0, 1.0), TermSpec("attention_maps", 1.0, blocks("attention_maps", pairs)),
                       TermSpec("hidden_states", 1.0, blocks("hidden_states", pairs))], student, teacher, X[:2])
    _, parts = one_batch(objective, teacher, student)
    assert parts["attention_maps"].item() == pytest.approx(0, abs=1e-7)
    assert parts["hidden_states"].item() == 0
    assert parts["soft_targets"].item() == pytest.approx(0, abs=1e-6)


def test_vit_pairs_that_cannot_be_compared_are_refused_naming_them():
    teacher, student = models(VIT_TEACHER, ModelSpec(name="vit", embed_dim=8, depth=2, heads=2, patch_size=4))
    with pytest.raises(ValueError, match="attention_maps pair \\('blocks.1.attn.attn_probs', "
                                         "'blocks.3.attn.attn_probs'\\).*same N"):
        build([TermSpec("attention_maps", 1.0, blocks("attention_maps", [(1, 3)]))], student, teacher, X[:2])
    with pytest.raises(ValueError, match="hidden_states pair \\('blocks.0', 'blocks.1'\\).*every dim but the last"):
        build([TermSpec("hidden_states", 1.0, blocks("hidden_states", [(0, 1)]))], student, teacher, X[:2])
    with pytest.raises(ValueError, match="has no module named 'blocks.7'"):
        build([TermSpec("hidden_states", 1.0, blocks("hidden_states", [(0, 7)]))], student, teacher, X[:2])


def test_learned_parts_are_drawn_in_the_order_they_always_were():
    """Hint regressors, then hidden projections, pair by pair: the same RNG draws as the old objective."""
    teacher, student = models(VIT_TEACHER, VIT_STUDENT)
    specs = [*kd(), TermSpec("hints", 1.0, [("pool", "pool")]),
             TermSpec("hidden_states", 1.0, blocks("hidden_states", [(0, 1), (1, 3)]))]
    torch.manual_seed(7)
    objective = build(specs, student, teacher, X[:2])
    torch.manual_seed(7)
    expected = [nn.Linear(8, 16), nn.Linear(8, 16, bias=False), nn.Linear(8, 16, bias=False)]
    got = list(objective.parameters())
    want = [p for m in expected for p in m.parameters()]
    assert len(got) == len(want) == 4
    assert all(torch.equal(a, b) for a, b in zip(got, want))


# ---- the registry and the sum's checks ----------------------------------------------------------


def test_unknown_and_repeated_names_are_refused_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown distillation term 'fitnet'; choose one of \['attention_maps', "):
        build([TermSpec("fitnet", 1.0)], None, None, None)
    with pytest.raises(ValueError, match=r"\['hard_labels'\] given more than once; each of \['attention_maps', .*"
                                         r"'soft_targets'\] may appear once"):
        build([*kd(), TermSpec("hard_labels", 0.1)], None, None, None)
    with pytest.raises(ValueError, match="given more than once"):
        WeightedSum([WeightedTerm("hard_labels", 1.0, [HardLabels()]), WeightedTerm("hard_labels", 1.0, [HardLabels()])])


def test_every_registered_term_declares_what_it_reads():
    reads = {name: choices.DISTILL_TERMS[name].reads for name in choices.DISTILL_TERMS}
    assert reads == {"soft_targets": "logits", "hard_labels": "labels", "hints": "layers",
                     "attention_transfer": "layers", "attention_maps": "attention_maps",
                     "hidden_states": "hidden_states"}


def test_terms_get_the_pairs_they_read():
    with pytest.raises(ValueError, match="hints reads layers: give it at least one"):
        build([TermSpec("hints", 1.0)], None, None, None)
    with pytest.raises(ValueError, match="hard_labels reads labels, not layer pairs"):
        build([TermSpec("hard_labels", 1.0, [("a", "b")])], None, None, None)
    with pytest.raises(ValueError, match="hidden_states: weight must be >= 0"):
        build([TermSpec("hidden_states", -1.0, [("pool", "pool")])], *models(VIT_TEACHER, VIT_STUDENT)[::-1], X[:2])
    with pytest.raises(ValueError, match="needs one per pair"):
        WeightedSum([WeightedTerm("hidden_states", 1.0, [], [("blocks.0", "blocks.0")])])


def test_a_new_term_is_one_module_and_one_registry_line():
    """A term the library does not ship joins the sum through a registry line alone, imported only when named."""
    toy = "tests.compression.distillation.toy_term"
    sys.modules.pop(toy, None)
    registry = choices.Registry("distillation term", {
        "hard_labels": "steps.compression.distillation.hard_labels:HardLabels",
        "mean_match": f"{toy}:MeanMatch",
    })
    assert toy not in sys.modules
    teacher, student = cnn([8, 16], []), cnn([4, 8], [])
    objective = build([TermSpec("hard_labels", 1.0), TermSpec("mean_match", 3.0, [("features.2", "features.2")])],
                      student, teacher, X[:1], registry=registry)
    assert toy in sys.modules
    loss, parts = one_batch(objective, teacher, student)
    with torch.no_grad(), FeatureTap(teacher, ["features.2"]) as t_tap:
        teacher(X)
    with FeatureTap(student, ["features.2"]) as s_tap:
        student(X)
    expected = (s_tap.outputs["features.2"].mean() - t_tap.outputs["features.2"].mean()) ** 2
    assert parts["mean_match"].item() == pytest.approx(3.0 * expected.item(), rel=1e-5)
    assert loss.item() == pytest.approx(parts["hard_labels"].item() + 3.0 * expected.item(), rel=1e-5)
