"""Structured slicing of a BERT-style Hugging Face encoder: whole layers, heads, FFN neurons, hidden channels.

Transformers 5 removed `prune_heads`, so the slicing is done here, by hand, on the modules the stock classes
build (BERT and RoBERTa and the models that copy their layout: `<base>.embeddings`, `<base>.encoder.layer[i]`
with `attention.self.{query,key,value}`, `attention.output.{dense,LayerNorm}`, `intermediate.dense`,
`output.{dense,LayerNorm}`, and a pooler / classifier head). Each width is a `Group`: the tensor dimensions
that one unit (a head, an FFN neuron, a hidden channel) spans in every layer that reads or writes it, listed
once here and used both to score the units (hf/importance.py) and to cut them (`cut`).

The pruned model must reload with stock `from_pretrained`, which rebuilds every layer from config.json, so
every width is uniform over the layers and the config is updated with it (`num_attention_heads`,
`intermediate_size`, `hidden_size`, `num_hidden_layers`). A BERT config has no head size of its own: its
attention computes head size = hidden_size / num_attention_heads, so the kept hidden width must be the
kept heads times the original head size (hf/method.py refuses a plan that breaks this; `check_describable`
refuses a model that does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

HIDDEN_KEY = "prune.transformer.embedding"
HEADS_KEY = "prune.transformer.heads"


class UnprunableError(ValueError):
    """A model whose layout the slicing does not know, or a cut its config could not describe; names both."""


@dataclass(frozen=True)
class Cut:
    """One dimension of one parameter that a group's units span: `module`'s `name` tensor along `dim`."""

    module: nn.Module
    name: str
    dim: int


@dataclass(frozen=True)
class Group:
    """Units removed together: unit i spans entries [i * size, (i + 1) * size) along every cut. `probes` are
    the (module, "input" | "output") activations whose channels are the units (the activation criterion)."""

    cuts: tuple[Cut, ...]
    units: int
    size: int
    probes: tuple[tuple[nn.Module, str], ...]


def base_model(model: nn.Module) -> nn.Module:
    """The encoder of an HFClassifier (`model.hf.bert`, `model.hf.roberta`, ...)."""
    hf = model.hf
    return getattr(hf, hf.base_model_prefix)


def layers(model: nn.Module) -> nn.ModuleList:
    return base_model(model).encoder.layer


def head_size(model: nn.Module) -> int:
    config = model.hf.config
    return config.hidden_size // config.num_attention_heads


def _linears(layer: nn.Module) -> tuple[nn.Linear, ...]:
    attention = layer.attention
    return (attention.self.query, attention.self.key, attention.self.value, attention.output.dense,
            layer.intermediate.dense, layer.output.dense)


def _head(model: nn.Module) -> tuple[list[nn.Linear], list[nn.Linear]]:
    """The classifier's hidden-by-hidden layers (BERT's pooler, RoBERTa's classifier.dense) and the layers
    that only read the hidden width (the classifier, RoBERTa's classifier.out_proj)."""
    classifier = model.hf.classifier
    pooler = getattr(base_model(model), "pooler", None)
    square = [pooler.dense] if pooler is not None else []
    if isinstance(classifier, nn.Linear):
        return square, [classifier]
    return [*square, classifier.dense], [classifier.out_proj]


def check_layout(model: nn.Module) -> None:
    """UnprunableError naming the model type and the first module the slicing would look for but not find."""
    model_type = model.hf.config.model_type
    paths = ("embeddings.word_embeddings", "embeddings.position_embeddings", "embeddings.LayerNorm",
             "encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key",
             "encoder.layer.0.attention.self.value", "encoder.layer.0.attention.output.dense",
             "encoder.layer.0.attention.output.LayerNorm", "encoder.layer.0.intermediate.dense",
             "encoder.layer.0.output.dense", "encoder.layer.0.output.LayerNorm")
    try:
        base = base_model(model)
    except AttributeError:
        raise UnprunableError(f"prune.method transformer: a {model_type} model has no base model "
                              f"{model.hf.base_model_prefix!r}; the hf slicing knows BERT-style encoders "
                              "(bert, roberta)") from None
    for path in paths:
        try:
            base.get_submodule(path)
        except AttributeError:
            raise UnprunableError(f"prune.method transformer: a {model_type} model has no {path}; the hf slicing "
                                  "knows BERT-style encoders (bert, roberta)") from None
    classifier = getattr(model.hf, "classifier", None)
    if not (isinstance(classifier, nn.Linear) or hasattr(classifier, "dense") and hasattr(classifier, "out_proj")):
        raise UnprunableError(f"prune.method transformer: a {model_type} model's classifier is neither one Linear "
                              "(BERT) nor dense + out_proj (RoBERTa)")


def _cuts(module: nn.Module, dim: int, bias: bool = True) -> tuple[Cut, ...]:
    """The weight along `dim`, and the bias where the dimension is the module's output (dim 0)."""
    found = [Cut(module, "weight", dim)]
    if bias and dim == 0 and getattr(module, "bias", None) is not None:
        found.append(Cut(module, "bias", 0))
    return tuple(found)


def _norm_cuts(norm: nn.LayerNorm) -> tuple[Cut, ...]:
    return tuple(Cut(norm, name, 0) for name in ("weight", "bias") if getattr(norm, name, None) is not None)


def head_groups(model: nn.Module) -> list[Group]:
    """One group per layer, one unit per head: its rows of query, key and value, its columns of the output."""
    d = head_size(model)
    groups = []
    for layer in layers(model):
        attention = layer.attention
        q, k, v, out = attention.self.query, attention.self.key, attention.self.value, attention.output.dense
        cuts = (*_cuts(q, 0), *_cuts(k, 0), *_cuts(v, 0), *_cuts(out, 1))
        groups.append(Group(cuts, out.in_features // d, d, ((out, "input"),)))
    return groups


def neuron_groups(model: nn.Module) -> list[Group]:
    """One group per layer, one unit per FFN neuron: its row of intermediate.dense, its column of output.dense."""
    groups = []
    for layer in layers(model):
        up, down = layer.intermediate.dense, layer.output.dense
        groups.append(Group((*_cuts(up, 0), *_cuts(down, 1)), up.out_features, 1, ((down, "input"),)))
    return groups


def hidden_group(model: nn.Module) -> Group:
    """One unit per hidden (embedding) channel, in every layer that reads or writes the residual stream: the
    word, position and token-type embeddings, every LayerNorm, every attention and FFN projection on the
    stream side, and the classifier head. The head's hidden-by-hidden layer keeps the same channels on both
    sides (its outputs are not the stream, but its config width is hidden_size). Probes: every LayerNorm's
    output (Minitron's embedding-channel activations)."""
    embeddings = base_model(model).embeddings
    tables = [getattr(embeddings, name, None) for name in
              ("word_embeddings", "position_embeddings", "token_type_embeddings")]
    norms = [embeddings.LayerNorm]
    cuts = [Cut(table, "weight", 1) for table in tables if table is not None]
    for layer in layers(model):
        q, k, v, out, up, down = _linears(layer)
        cuts += [*_cuts(q, 1), *_cuts(k, 1), *_cuts(v, 1), *_cuts(out, 0), *_cuts(up, 1), *_cuts(down, 0)]
        norms += [layer.attention.output.LayerNorm, layer.output.LayerNorm]
    square, reads = _head(model)
    for linear in square:
        cuts += [*_cuts(linear, 0), *_cuts(linear, 1)]
    for linear in reads:
        cuts += _cuts(linear, 1)
    for norm in norms:
        cuts += _norm_cuts(norm)
    width = embeddings.LayerNorm.normalized_shape[0]
    return Group(tuple(cuts), width, 1, tuple((norm, "output") for norm in norms))


def unit_sums(group: Group, tensor_of) -> torch.Tensor:
    """Per unit, the sum over every cut of `tensor_of(cut)` (a tensor shaped like the cut's parameter, e.g. |w|)
    over the entries the unit spans."""
    total = torch.zeros(group.units)
    for cut in group.cuts:
        values = tensor_of(cut).detach().float().movedim(cut.dim, 0).reshape(group.units, -1)
        total += values.sum(1).cpu()
    return total


def cut(group: Group, keep: list[int]) -> None:
    """Keep only units `keep` (sorted) of `group` in every cut, in place: new, smaller Parameters."""
    index = torch.tensor([u * group.size + j for u in keep for j in range(group.size)], dtype=torch.long)
    for c in group.cuts:
        old = getattr(c.module, c.name)
        kept = old.detach().index_select(c.dim, index.to(old.device)).clone()
        setattr(c.module, c.name, nn.Parameter(kept, requires_grad=old.requires_grad))
    for module in {id(c.module): c.module for c in group.cuts}.values():
        _fit(module)


def _fit(module: nn.Module) -> None:
    """The module's size attributes from its (sliced) weight."""
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = tuple(module.weight.shape)
    elif isinstance(module, nn.Embedding):
        module.embedding_dim = module.weight.shape[1]


def keep_layers(model: nn.Module, kept: list[int]) -> None:
    """Keep encoder layers `kept` (in order), renumbered 0.., so the weights' keys are those of a plain
    shallower model; config.num_hidden_layers follows."""
    encoder = base_model(model).encoder
    encoder.layer = nn.ModuleList(encoder.layer[i] for i in kept)
    for i, layer in enumerate(encoder.layer):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i  # the cache slot a decoder would use
    model.hf.config.num_hidden_layers = len(kept)


def keep_heads(model: nn.Module, kept: list[list[int]]) -> None:
    """Keep heads `kept[l]` of layer l (the same count in every layer); the attention modules and
    config.num_attention_heads follow. Head size stays: call `keep_hidden` to the same kept heads x head
    size before the model is saved (`check_describable`)."""
    counts = {len(k) for k in kept}
    if len(counts) != 1:
        raise UnprunableError(f"{HEADS_KEY}: an hf config describes one head count for every layer, got "
                              f"{[len(k) for k in kept]}")
    for group, heads, layer in zip(head_groups(model), kept, layers(model), strict=True):
        cut(group, heads)
        attention = layer.attention.self
        attention.num_attention_heads = len(heads)
        attention.all_head_size = len(heads) * attention.attention_head_size
    model.hf.config.num_attention_heads = counts.pop()


def keep_neurons(model: nn.Module, kept: list[list[int]]) -> None:
    """Keep FFN neurons `kept[l]` of layer l (the same count in every layer); config.intermediate_size follows."""
    counts = {len(k) for k in kept}
    if len(counts) != 1:
        raise UnprunableError(f"prune.transformer.mlp: an hf config describes one intermediate_size for every "
                              f"layer, got {[len(k) for k in kept]}")
    for group, neurons in zip(neuron_groups(model), kept, strict=True):
        cut(group, neurons)
    model.hf.config.intermediate_size = counts.pop()


def keep_hidden(model: nn.Module, kept: list[int]) -> None:
    """Keep hidden channels `kept` everywhere the stream is read or written; config.hidden_size follows."""
    cut(hidden_group(model), kept)
    model.hf.config.hidden_size = len(kept)


def check_describable(model: nn.Module) -> None:
    """UnprunableError unless config.json rebuilds exactly these shapes: from_pretrained gives every layer
    hidden_size / num_attention_heads per head, so the attention width must equal hidden_size."""
    config = model.hf.config
    for i, layer in enumerate(layers(model)):
        attention = layer.attention.self
        width = attention.query.out_features
        if attention.num_attention_heads != config.num_attention_heads or width != config.hidden_size:
            raise UnprunableError(
                f"{HEADS_KEY} and {HIDDEN_KEY}: layer {i} has {attention.num_attention_heads} heads of "
                f"{attention.attention_head_size} ({width} channels) but hidden_size {config.hidden_size}; a "
                f"{config.model_type} config computes head size = hidden_size / num_attention_heads, so it "
                "cannot describe this model: prune heads and hidden width to the same fraction")
