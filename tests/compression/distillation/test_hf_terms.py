"""Hidden states (TinyBERT) and attention maps (MiniLM) between two tiny Hugging Face BERTs of different widths and
depths, each against its formula on transformers' own `output_hidden_states` / `output_attentions` (a second
route to the same tensors); padding left out; the element selector of FeatureTap that reads the attentions."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification

from steps.compression.distillation.attention_maps import AttentionMaps
from steps.compression.distillation.features import FeatureTap
from steps.compression.distillation.hidden_states import HiddenStates
from steps.compression.distillation.objective import TermSpec, build
from steps.compression.families import family_of
from steps.compression.families.hf.model import HFClassifier
from steps.config.distill import DistillTerm
from steps.distill.objective import block_pairs

VOCAB, PAD = 40, 0
TEACHER = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
STUDENT = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 32}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bert(sizes: dict, seed: int, model_type: str = "bert") -> HFClassifier:
    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **sizes, vocab_size=VOCAB, pad_token_id=PAD, num_labels=2,
                                  max_position_embeddings=16)
    return HFClassifier(AutoModelForSequenceClassification.from_config(config))


def batch() -> dict[str, torch.Tensor]:
    """Two texts of 7 positions, the second with 3 of padding."""
    ids = torch.randint(3, VOCAB, (2, 7), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    ids[1, 4:], mask[1, 4:] = PAD, 0
    return {"input_ids": ids, "attention_mask": mask}


def objective(name: str, student: HFClassifier, teacher: HFClassifier, layer_map: str = "uniform"):
    term = DistillTerm(name=name, source=f"distill.{name}", weight=1.0, layer_map=layer_map)
    pairs = block_pairs(term, name, student, teacher, "teacher")
    return build([TermSpec(name, 1.0, pairs)], student, teacher, batch()), pairs


def run(model: HFClassifier, names: list[str], x: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    with FeatureTap(model, names) as tap:
        logits = model(**x)
        return logits, dict(tap.outputs)


def both(loss, student, teacher, x):
    s_logits, s_feats = run(student, loss.student_layers, x)
    with torch.no_grad():
        t_logits, t_feats = run(teacher, loss.teacher_layers, x)
    return loss(s_logits, t_logits, torch.zeros(2, dtype=torch.long), s_feats, t_feats, x["attention_mask"])


@pytest.mark.parametrize(("model_type", "sizes", "layer", "attention"), [
    ("bert", TEACHER, "hf.bert.encoder.layer.{}", "hf.bert.encoder.layer.{}.attention.self[1]"),
    ("distilbert", {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64},
     "hf.distilbert.transformer.layer.{}", "hf.distilbert.transformer.layer.{}.attention[1]"),
])
def test_the_family_names_each_layer_from_what_transformers_records(model_type, sizes, layer, attention):
    model = bert(sizes, 0, model_type)
    family = family_of(model)
    assert family.hidden_states(model) == [layer.format(i) for i in range(2)]
    assert model.hf.config._attn_implementation == "sdpa"  # transformers' default: no probabilities
    assert family.attention_maps(model) == [attention.format(i) for i in range(2)]
    assert model.hf.config._attn_implementation == "eager"  # the only implementation that computes them


def test_hidden_states_are_the_mse_of_the_projected_mapped_layers_over_real_tokens():
    teacher, student = bert(TEACHER, 0).eval(), bert(STUDENT, 1).eval()
    loss, pairs = objective("hidden_states", student, teacher)
    assert pairs == [("hf.bert.encoder.layer.0", "hf.bert.encoder.layer.1")]  # TinyBERT's map: 1 of 1 <- 2 of 2
    x = batch()
    value = both(loss, student, teacher, x)
    with torch.no_grad():  # transformers' own hidden states: [0] is the embeddings', [i + 1] layer i's output
        h_s = student.hf(**x, output_hidden_states=True).hidden_states[1]
        h_t = teacher.hf(**x, output_hidden_states=True).hidden_states[2]
    w = loss.terms["hidden_states"][0].project.weight  # (32, 16): the learned projection, widths differ
    assert w.shape == (32, 16)
    real = x["attention_mask"].bool()
    expected = ((h_s @ w.T - h_t)[real] ** 2).sum() / (real.sum() * 32)  # 11 real tokens of 14
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    unmasked = ((h_s @ w.T - h_t) ** 2).mean()
    assert abs(value.item() - unmasked.item()) > 1e-4  # padding would have counted


def test_attention_maps_are_the_kl_of_head_averaged_distributions_over_real_rows():
    peaked = {"initializer_range": 0.5}  # attention far from uniform, so the KL is far from 0
    teacher = bert({**TEACHER, **peaked}, 0).eval()
    student = bert({**STUDENT, **peaked, "num_hidden_layers": 2}, 1).eval()
    loss, pairs = objective("attention_maps", student, teacher, layer_map="last")
    assert pairs == [("hf.bert.encoder.layer.1.attention.self[1]", "hf.bert.encoder.layer.1.attention.self[1]")]
    x = batch()
    value = both(loss, student, teacher, x)
    with torch.no_grad():  # eager now (the hook switched both): transformers returns the same maps
        a_s = student.hf(**x, output_attentions=True).attentions[-1].mean(1)  # 1 head vs 2: head-averaged
        a_t = teacher.hf(**x, output_attentions=True).attentions[-1].mean(1)
    assert a_t[1, :, 4:].abs().max() == 0  # the padded keys have probability 0: nothing there to mask
    kl_rows = torch.where(a_t > 0, a_t * (a_t.log() - a_s.log()), 0).sum(-1)  # (B, N): KL per query row
    real = x["attention_mask"].bool()
    assert value.item() == pytest.approx(kl_rows[real].mean().item(), rel=1e-5)
    assert value.item() > 0.01 and abs(value.item() - kl_rows.mean().item()) > 1e-3  # padded rows would count


def test_eager_attention_keeps_the_models_outputs_and_a_training_student_still_has_distributions():
    model = bert({**TEACHER, "attention_probs_dropout_prob": 0.5}, 0).eval()
    x = batch()
    with torch.no_grad():
        sdpa = model(**x)
    names = family_of(model).attention_maps(model)
    with torch.no_grad():
        assert torch.allclose(model(**x), sdpa, atol=1e-5)
    model.train()  # dropout on the probabilities would zero entries of the map the student learns
    _, maps = run(model, names, x)
    for probabilities in maps.values():
        assert torch.allclose(probabilities.sum(-1), torch.ones(2, 2, 7), atol=1e-5)
    assert any(m.p > 0 for m in model.modules() if isinstance(m, nn.Dropout))  # the rest keeps its dropout


def test_the_projection_learns_with_the_student_and_the_teacher_gets_no_gradient():
    teacher, student = bert(TEACHER, 0).eval(), bert(STUDENT, 1).train()
    loss, _ = objective("hidden_states", student, teacher)
    value = both(loss, student, teacher, batch())
    value.backward()
    assert loss.terms["hidden_states"][0].project.weight.grad is not None
    assert student.hf.bert.encoder.layer[0].output.dense.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_an_sdpa_attention_module_is_refused_naming_eager():
    model = bert(TEACHER, 0).eval()
    with pytest.raises(TypeError, match=r"attention.self\[1\]'.*returned None as element 1.*eager"):
        run(model, ["hf.bert.encoder.layer.0.attention.self[1]"], batch())


def test_masked_terms_golden_values():
    hidden = HiddenStates(2, 2)
    s, t = torch.tensor([[[1.0, 2.0], [5.0, 5.0]]]), torch.tensor([[[1.0, 4.0], [0.0, 0.0]]])
    assert hidden(s, t, torch.tensor([[1, 0]])).item() == pytest.approx(2.0)  # (0 + 4) / (1 token * 2 dims)
    assert hidden(s, t, torch.ones(1, 2)).item() == pytest.approx(hidden(s, t).item())
    maps = AttentionMaps()
    teacher = torch.tensor([[[[0.75, 0.25], [0.5, 0.5]]]])
    student = torch.tensor([[[[0.5, 0.5], [0.25, 0.75]]]])
    row_kl = 0.75 * torch.log(torch.tensor(1.5)) + 0.25 * torch.log(torch.tensor(0.5))
    assert maps(student, teacher, torch.tensor([[1, 0]])).item() == pytest.approx(row_kl.item(), abs=1e-6)
    assert maps(student, teacher, torch.ones(1, 2)).item() == pytest.approx(maps(student, teacher).item())
    with pytest.raises(ValueError, match=r"token mask \(1, 3\) does not match"):
        hidden(s, t, torch.ones(1, 3))
