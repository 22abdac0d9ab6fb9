"""prune.method transformer on hf encoders (issue 26): layers, heads, FFN and hidden width cut by hand on a tiny
BERT (and RoBERTa), the config updated so that stock `from_pretrained` rebuilds the same model, the criteria on
the hand-listed groups, and the plans an hf config cannot describe refused by key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import (AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification,
                          DistilBertConfig, DistilBertForSequenceClassification, RobertaConfig,
                          RobertaForSequenceClassification)

from steps import config, prune
from steps.compression import measure
from steps.compression.families import family_of
from steps.compression.families.hf import importance
from steps.compression.families.hf.method import (
    Fractions, HFTransformerPruning, Shape, prune_encoder, shape_of, target_shape)
from steps.compression.families.hf.model import HFClassifier, HFModelError
from steps.compression.families.hf.pruning import (
    UnprunableError, check_describable, check_layout, head_groups, keep_heads, layers, names)
from steps.compression.training import Split

SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
         "vocab_size": 50, "max_position_embeddings": 40, "num_labels": 3}
ORIGINAL = Shape(layers=2, heads=4, intermediate=64, hidden=32)


def tiny(kind: str = "bert", **keys) -> HFClassifier:
    torch.manual_seed(0)
    if kind == "roberta":
        return HFClassifier(RobertaForSequenceClassification(RobertaConfig(**SIZES, pad_token_id=1, **keys))).eval()
    if kind == "distilbert":  # its config maps hidden_size, num_attention_heads, num_hidden_layers to its names
        sizes = {k: v for k, v in SIZES.items() if k != "intermediate_size"}
        hf = DistilBertForSequenceClassification(DistilBertConfig(**sizes, hidden_dim=64, pad_token_id=0, **keys))
        return HFClassifier(hf).eval()
    return HFClassifier(BertForSequenceClassification(BertConfig(**SIZES, pad_token_id=0, **keys))).eval()


def calibration(rows: int = 8) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(2, SIZES["vocab_size"], (rows, 12), generator=generator)
    mask = torch.ones_like(ids)
    ids[:, 9:], mask[:, 9:] = 0, 0  # a padded tail, as tokenised texts have
    return {"input_ids": ids, "attention_mask": mask}, torch.randint(0, 3, (rows,), generator=generator)


def logits(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model(**x)


def reloaded(model: HFClassifier, folder: Path):
    """The folder save_pretrained writes, read back by stock transformers alone."""
    model.hf.save_pretrained(folder)
    stock = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    return stock.eval()


@pytest.mark.parametrize(("kind", "target"), [
    ("bert", Shape(layers=1, heads=4, intermediate=64, hidden=32)),  # depth
    ("bert", Shape(layers=2, heads=2, intermediate=64, hidden=16)),  # heads, and with them the hidden width
    ("bert", Shape(layers=2, heads=4, intermediate=24, hidden=32)),  # FFN
    ("bert", Shape(layers=1, heads=3, intermediate=40, hidden=24)),  # all at once
    ("roberta", Shape(layers=1, heads=2, intermediate=32, hidden=16)),
    ("distilbert", Shape(layers=1, heads=2, intermediate=32, hidden=16)),
], ids=["depth", "heads", "ffn", "all", "roberta", "distilbert"])
@pytest.mark.parametrize("criterion", ["l1", "taylor", "output_norm"])
def test_each_axis_shrinks_the_model_and_stock_from_pretrained_rebuilds_it(tmp_path, kind, target, criterion):
    model = tiny(kind)
    x, y = calibration()
    before = measure.parameters(model)
    prune_encoder(model, target, criterion, "block_influence", (x, y))
    assert shape_of(model) == target
    config_, n = model.hf.config, names(model)
    assert (config_.num_hidden_layers, config_.num_attention_heads, getattr(config_, n.intermediate_key),
            config_.hidden_size) == (target.layers, target.heads, target.intermediate, target.hidden)
    encoder = layers(model)
    assert len(encoder) == target.layers
    for layer in encoder:
        assert layer.get_submodule(n.query).weight.shape == (target.hidden, target.hidden)
        assert layer.get_submodule(n.attention).attention_head_size == 8  # heads keep their size
        assert layer.get_submodule(n.up).weight.shape == (target.intermediate, target.hidden)
        assert layer.get_submodule(n.output_norm).weight.shape == (target.hidden,)
    base = getattr(model.hf, model.hf.base_model_prefix)
    assert base.embeddings.word_embeddings.weight.shape == (SIZES["vocab_size"], target.hidden)
    assert base.embeddings.position_embeddings.weight.shape[1] == target.hidden
    assert measure.parameters(model) < before
    stock = reloaded(model, tmp_path / "pruned")
    assert type(stock) is type(model.hf)
    assert measure.parameters(stock) == measure.parameters(model)
    torch.testing.assert_close(stock(**x).logits, logits(model, x), rtol=0, atol=1e-6)


def test_the_classifier_head_reads_the_kept_hidden_width():
    bert, roberta, distilbert = tiny("bert"), tiny("roberta"), tiny("distilbert")
    for model in (bert, roberta, distilbert):
        prune_encoder(model, Shape(2, 2, 64, 16), "l1", "logit_kl", None)
    assert bert.hf.bert.pooler.dense.weight.shape == (16, 16) and bert.hf.classifier.weight.shape == (3, 16)
    assert roberta.hf.classifier.dense.weight.shape == (16, 16)
    assert roberta.hf.classifier.out_proj.weight.shape == (3, 16)
    assert distilbert.hf.pre_classifier.weight.shape == (16, 16) and distilbert.hf.classifier.weight.shape == (3, 16)


def test_a_plan_that_removes_nothing_leaves_the_logits_identical(tmp_path):
    model, x = tiny(), calibration()[0]
    expected = logits(model, x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prune_encoder(model, ORIGINAL, "output_norm", "logit_kl", calibration())
    assert torch.equal(logits(model, x), expected)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    # fractions too small to remove a whole unit round to the original shape (rounding.keep)
    assert target_shape(ORIGINAL, 8, Fractions(depth=0.2, heads=0.1, mlp=0.001, embedding=0.1)) == ORIGINAL
    with torch.no_grad():
        assert torch.equal(reloaded(model, tmp_path / "same")(**x).logits, expected)


def _silence_head(model: HFClassifier, head: int) -> None:
    """Zero head `head` in every layer: its query, key and value rows and its columns of the output."""
    d = 8
    rows = slice(head * d, (head + 1) * d)
    with torch.no_grad():
        for layer in layers(model):
            for linear in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
                linear.weight[rows] = 0
                linear.bias[rows] = 0
            layer.attention.output.dense.weight[:, rows] = 0


@pytest.mark.parametrize("criterion", ["output_norm", "taylor", "l1"])
def test_every_criterion_scores_a_silenced_head_lowest_and_pruning_removes_it(criterion):
    model = tiny()
    _silence_head(model, 2)
    scores = importance.scores(model, criterion, head_groups(model), calibration())
    assert [int(s.argmin()) for s in scores] == [2, 2]
    assert all(s[2] == 0 and (s[[0, 1, 3]] > 0).all() for s in scores)
    prune_encoder(model, Shape(2, 3, 64, 24), criterion, "logit_kl", calibration())
    for layer in layers(model):  # the silenced head's all-zero value rows are gone; the other heads' stay whole
        assert (layer.attention.self.value.weight.abs().sum(1) > 0).all()


def test_activation_importance_is_the_mean_square_of_each_head_output():
    model, (x, y) = tiny(), calibration()
    outputs = []
    dense = layers(model)[0].attention.output.dense
    hook = dense.register_forward_pre_hook(lambda module, args: outputs.append(args[0].detach()))
    logits(model, x)
    hook.remove()
    expected = outputs[0].pow(2).reshape(-1, 4, 8).mean((0, 2))
    (scores, _) = importance.scores(model, "output_norm", head_groups(model), (x, y))
    torch.testing.assert_close(scores, expected)


@pytest.mark.parametrize("metric", ["block_influence", "logit_kl", "logit_cosine"])
def test_depth_drops_the_layer_that_does_nothing(metric):
    """A post-norm layer whose attention and FFN write zeros returns LayerNorm(x) = x for the normalised x it
    reads (unit LayerNorm weights): skipping it changes nothing, so every block metric drops it. Weights drawn
    wider than BERT's 0.02 make the other layer matter."""
    model, (x, y) = tiny(initializer_range=0.5), calibration()
    with torch.no_grad():
        idle = layers(model)[0]
        for linear in (idle.attention.output.dense, idle.output.dense):
            linear.weight.zero_()
            linear.bias.zero_()
    kept = copy.deepcopy(layers(model)[1])
    expected = logits(model, x)
    scores = importance.layer_scores(model, metric, (x, y))
    assert scores[0] < 1e-6 and scores[1] > 1e-3
    prune_encoder(model, Shape(1, 4, 64, 32), "l1", metric, (x, y))
    assert all(torch.equal(a, b) for a, b in zip(layers(model)[0].state_dict().values(), kept.state_dict().values()))
    torch.testing.assert_close(logits(model, x), expected, rtol=0, atol=1e-4)


def test_heads_and_hidden_width_that_no_config_describes_are_refused_naming_both_keys():
    with pytest.raises(UnprunableError, match=r"prune.transformer.heads 0.5 keeps 2 of 4 heads but "
                                              r"prune.transformer.embedding 0.0 keeps 32 of 32 hidden channels.*"
                                              r"head size = hidden_size / num_attention_heads.*same fraction"):
        target_shape(ORIGINAL, 8, Fractions(heads=0.5))
    with pytest.raises(UnprunableError, match=r"embedding 0.25 keeps 24 of 32"):
        target_shape(ORIGINAL, 8, Fractions(embedding=0.25))
    assert target_shape(ORIGINAL, 8, Fractions(heads=0.25, embedding=0.25)) == Shape(2, 3, 64, 24)
    # round_to rounds the FFN width; the hidden width moves in whole heads
    assert target_shape(ORIGINAL, 8, Fractions(mlp=0.3, heads=0.5, embedding=0.5), round_to=16) == Shape(2, 2, 32, 16)
    model = tiny()
    with pytest.raises(UnprunableError, match=r"2 heads of 8 need hidden width 16, not 32"):
        prune_encoder(model, Shape(2, 2, 64, 32), "l1", "logit_kl", None)
    assert shape_of(model) == ORIGINAL  # refused before any cut
    with pytest.raises(UnprunableError, match=r"one head count for every layer, got \[3, 2\]"):
        keep_heads(model, [[0, 1, 2], [0, 1]])
    keep_heads(model, [[0, 1], [2, 3]])  # fine in memory (head size stays 8) but not what config.json rebuilds
    with pytest.raises(UnprunableError, match=r"layer 0 has 2 heads of 8 \(16 channels\) but hidden_size 32"):
        check_describable(model)


def _prune_config(**transformer) -> object:
    return config.PruneConfig.model_validate({
        "method": "transformer", "target_sparsity": 0.5, "rounds": 2, "schedule": "linear",
        "transformer": transformer, "finetune": {"epochs": 1, "batch_size": 8, "lr": 0.01}})


def test_the_method_refuses_global_heads_and_an_undescribable_plan_before_any_work():
    model = tiny()
    with pytest.raises(UnprunableError, match=r"prune.transformer.global_heads: an hf config describes one head "
                                              r"count for every layer"):
        HFTransformerPruning(model, _prune_config(heads=0.5, embedding=0.5, global_heads=True))
    with pytest.raises(UnprunableError, match=r"prune.transformer.heads 0.5 keeps 2 of 4"):
        HFTransformerPruning(model, _prune_config(heads=0.5))
    assert shape_of(model) == ORIGINAL


def test_the_rounds_reach_each_target_from_the_original_shape(tmp_path):
    model = tiny()
    x, y = calibration(16)
    method = family_of(model).prune_method_class("transformer")(
        model, _prune_config(depth=0.5, heads=0.5, embedding=0.5, mlp=0.5, importance="taylor"))
    assert isinstance(method, HFTransformerPruning)
    assert method.targets() == [0.25, 0.5]
    train = Split(x, y)
    method.prune_round(model, 1, train, torch.device("cpu"))
    assert shape_of(model) == Shape(layers=2, heads=3, intermediate=48, hidden=24)  # round(2 * 0.75) = 2 layers
    method.prune_round(model, 2, train, torch.device("cpu"))
    assert shape_of(model) == Shape(layers=1, heads=2, intermediate=32, hidden=16)
    assert method.sparsity(model) > 0.5
    torch.testing.assert_close(reloaded(model, tmp_path / "r2")(**x).logits, logits(model, x), rtol=0, atol=1e-6)


def test_an_hf_classifier_is_pruned_by_transformer_only_and_a_layout_it_does_not_know_is_refused():
    model = tiny()
    family = family_of(model)
    assert family.prune_methods == frozenset({"transformer", "wanda", "magnitude"})  # the last two: causal LMs
    with pytest.raises(HFModelError, match="an hf model is not pruned by channel: use prune.method transformer"):
        family.refuse_unprunable(model)
    magnitude = _prune_config(heads=0.5, embedding=0.5).model_copy(update={"method": "magnitude"})
    with pytest.raises(ValueError, match=r"prune.method magnitude prunes a causal language model's decoder \(data.task "
                                         r"causal_lm\); an hf classifier is pruned with prune.method transformer"):
        prune.method_for(model, magnitude)
    assert type(prune.method_for(model, _prune_config(heads=0.5, embedding=0.5))) is HFTransformerPruning
    check_layout(model)
    del model.hf.bert.embeddings.LayerNorm
    with pytest.raises(UnprunableError, match=r"a bert model has no embeddings.LayerNorm; the hf slicing knows the "
                                              r"layouts BERT's \(encoder.layer.N.attention.self.query, ...\) or "
                                              r"DistilBERT's"):
        check_layout(model)
    model = tiny()
    model.hf.bert.encoder.layer[0].intermediate.dense = torch.nn.Identity()  # e.g. a layer someone replaced
    with pytest.raises(UnprunableError, match=r"a bert model's layers are not in a layout the hf slicing knows"):
        check_layout(model)


def test_an_encoder_whose_embeddings_project_up_to_the_hidden_width_is_refused_naming_both_widths():
    """ELECTRA's embeddings are embedding_size wide and projected to hidden_size: cutting the hidden width in the
    embeddings would leave the projection unsliced (a model that no longer runs), so it is refused."""
    from transformers import ElectraConfig, ElectraForSequenceClassification

    torch.manual_seed(0)
    electra = HFClassifier(ElectraForSequenceClassification(ElectraConfig(**SIZES, embedding_size=16))).eval()
    with pytest.raises(UnprunableError, match=r"a electra model's embeddings are 16 wide and project to "
                                              r"hidden_size 32"):
        check_layout(electra)


def test_activation_statistics_read_the_real_tokens_only():
    """Padding is not what the model reads: the statistics are those of the real tokens, whatever the padding
    positions hold (short texts padded to max_length would otherwise be scored mostly on padding)."""
    from steps.compression.criteria import criterion
    from steps.compression.criteria.activation import channel_mean_square

    x = torch.tensor([[[1.0, 2.0], [9.0, 9.0]], [[3.0, 4.0], [5.0, 6.0]]])  # (B=2, N=2, C=2)
    mask = torch.tensor([[1, 0], [1, 1]])
    assert torch.allclose(channel_mean_square(x, mask), torch.tensor([(1 + 9 + 25) / 3, (4 + 16 + 36) / 3]))
    model, (inputs, labels) = tiny(), calibration()
    inputs["attention_mask"][:, 8:] = 0
    other_padding = {**inputs, "input_ids": inputs["input_ids"].clone()}
    other_padding["input_ids"][:, 8:] = 3
    scores = [criterion(importance.HF_IMPORTANCES, name).prepare(model, (batch, labels)).stats
              for name, batch in (("output_norm", inputs), ("output_norm", other_padding))]
    assert scores[0].keys() == scores[1].keys()
    assert all(torch.allclose(scores[0][key], scores[1][key], atol=1e-6) for key in scores[0])
