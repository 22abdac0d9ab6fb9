"""Structured slicing of a BERT-style Hugging Face encoder: whole layers, heads, FFN neurons, hidden channels.

Transformers 5 removed `prune_heads`, so the slicing is done here, by hand, on the modules the stock classes
build: BERT's layout (`<base>.encoder.layer[i]` with `attention.self.{query,key,value}`,
`attention.output.{dense,LayerNorm}`, `intermediate.dense`, `output.{dense,LayerNorm}`; BERT, RoBERTa and
the models that copy it) or DistilBERT's (`<base>.transformer.layer[i]` with `attention.{q,k,v,out}_lin`,
`sa_layer_norm`, `ffn.lin{1,2}`, `output_layer_norm`), both with `<base>.embeddings` and a pooler /
classifier head (`Names`, found by looking, not by model_type). Each width is a `Group`: the tensor dimensions
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


@dataclass(frozen=True)
class Names:
    """Where an encoder layout keeps its parts: the layers (from the base model), the modules of a layer (from
    the layer), the attention module's head-count attribute, and the config key of the FFN width."""

    layers: str
    attention: str
    heads_attribute: str
    query: str
    key: str
    value: str
    out: str
    attention_norm: str
    up: str
    down: str
    output_norm: str
    intermediate_key: str

    def linears(self) -> tuple[str, ...]:
        return self.query, self.key, self.value, self.out, self.up, self.down


BERT = Names("encoder.layer", "attention.self", "num_attention_heads", "attention.self.query",
             "attention.self.key", "attention.self.value", "attention.output.dense", "attention.output.LayerNorm",
             "intermediate.dense", "output.dense", "output.LayerNorm", "intermediate_size")
DISTILBERT = Names("transformer.layer", "attention", "n_heads", "attention.q_lin", "attention.k_lin",
                   "attention.v_lin", "attention.out_lin", "sa_layer_norm", "ffn.lin1", "ffn.lin2",
                   "output_layer_norm", "hidden_dim")
LAYOUTS = {"BERT": BERT, "DistilBERT": DISTILBERT}
EMBEDDINGS = ("embeddings.word_embeddings", "embeddings.position_embeddings", "embeddings.LayerNorm")


def base_model(model: nn.Module) -> nn.Module:
    """The encoder of an HFClassifier (`model.hf.bert`, `model.hf.roberta`, `model.hf.distilbert`, ...)."""
    hf = model.hf
    return getattr(hf, hf.base_model_prefix)


def _has(module: nn.Module, path: str, kind: type = nn.Module) -> bool:
    """Whether `module` holds a `kind` at `path` (a Linear replaced by something else is not sliced blindly)."""
    try:
        return isinstance(module.get_submodule(path), kind)
    except AttributeError:
        return False


def names(model: nn.Module) -> Names:
    """The layout of `model`'s encoder, or UnprunableError naming the model type and what is missing."""
    model_type = model.hf.config.model_type
    known = " or ".join(f"{name}'s ({layout.layers}.N.{layout.query}, ...)" for name, layout in LAYOUTS.items())
    base = getattr(model.hf, model.hf.base_model_prefix, None)
    if base is None:
        raise UnprunableError(f"prune.method transformer: a {model_type} model has no base model "
                              f"{model.hf.base_model_prefix!r}; the hf slicing knows the layouts {known}")
    for path, kind in zip(EMBEDDINGS, (nn.Embedding, nn.Embedding, nn.LayerNorm), strict=True):
        if not _has(base, path, kind):
            raise UnprunableError(f"prune.method transformer: a {model_type} model has no {path}; the hf slicing "
                                  f"knows the layouts {known}")
    embedded, hidden = base.get_submodule(EMBEDDINGS[0]).embedding_dim, model.hf.config.hidden_size
    if embedded != hidden:  # ELECTRA and ALBERT project the embeddings up to the hidden width
        raise UnprunableError(f"prune.method transformer: a {model_type} model's embeddings are {embedded} wide "
                              f"and project to hidden_size {hidden}; the hf slicing cuts the hidden width in the "
                              "embeddings themselves, so it prunes only encoders whose embeddings are hidden_size wide")
    for layout in LAYOUTS.values():
        first = f"{layout.layers}.0"
        parts = [(layout.attention, nn.Module), *((path, nn.Linear) for path in layout.linears()),
                 (layout.attention_norm, nn.LayerNorm), (layout.output_norm, nn.LayerNorm)]
        if _has(base, first) and all(_has(base, f"{first}.{path}", kind) for path, kind in parts):
            return layout
    raise UnprunableError(f"prune.method transformer: a {model_type} model's layers are not in a layout the hf "
                          f"slicing knows: {known}")


def check_layout(model: nn.Module) -> None:
    """UnprunableError naming the model type and what the slicing would look for but not find."""
    names(model)
    _head(model)


def layers(model: nn.Module) -> nn.ModuleList:
    return base_model(model).get_submodule(names(model).layers)


def head_size(model: nn.Module) -> int:
    config = model.hf.config
    return config.hidden_size // config.num_attention_heads


def intermediate_size(model: nn.Module) -> int:
    return getattr(model.hf.config, names(model).intermediate_key)


def _part(layer: nn.Module, path: str) -> nn.Module:
    return layer.get_submodule(path)


def _head(model: nn.Module) -> tuple[list[nn.Linear], list[nn.Linear]]:
    """The classifier's hidden-by-hidden layers (BERT's pooler, RoBERTa's classifier.dense, DistilBERT's
    pre_classifier) and the layers that only read the hidden width (the classifier, or RoBERTa's out_proj)."""
    hf, pooler = model.hf, getattr(base_model(model), "pooler", None)
    classifier = getattr(hf, "classifier", None)
    square = [pooler.dense] if pooler is not None else []
    square += [hf.pre_classifier] if isinstance(getattr(hf, "pre_classifier", None), nn.Linear) else []
    if isinstance(classifier, nn.Linear):
        return square, [classifier]
    if isinstance(getattr(classifier, "dense", None), nn.Linear) and isinstance(getattr(classifier, "out_proj", None),
                                                                               nn.Linear):
        return [*square, classifier.dense], [classifier.out_proj]
    raise UnprunableError(f"prune.method transformer: a {hf.config.model_type} model's classifier is neither one "
                          "Linear (BERT, DistilBERT) nor dense + out_proj (RoBERTa)")


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
    d, n = head_size(model), names(model)
    groups = []
    for layer in layers(model):
        q, k, v, out = (_part(layer, path) for path in (n.query, n.key, n.value, n.out))
        cuts = (*_cuts(q, 0), *_cuts(k, 0), *_cuts(v, 0), *_cuts(out, 1))
        groups.append(Group(cuts, out.in_features // d, d, ((out, "input"),)))
    return groups


def neuron_groups(model: nn.Module) -> list[Group]:
    """One group per layer, one unit per FFN neuron: its row of intermediate.dense, its column of output.dense."""
    groups, n = [], names(model)
    for layer in layers(model):
        up, down = _part(layer, n.up), _part(layer, n.down)
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
    n = names(model)
    for layer in layers(model):
        q, k, v, out, up, down = (_part(layer, path) for path in n.linears())
        cuts += [*_cuts(q, 1), *_cuts(k, 1), *_cuts(v, 1), *_cuts(out, 0), *_cuts(up, 1), *_cuts(down, 0)]
        norms += [_part(layer, n.attention_norm), _part(layer, n.output_norm)]
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
    owner_path, _, attribute = names(model).layers.rpartition(".")
    owner = base_model(model).get_submodule(owner_path)
    setattr(owner, attribute, nn.ModuleList(getattr(owner, attribute)[i] for i in kept))
    if hasattr(owner, "n_layers"):  # DistilBERT's Transformer keeps its count
        owner.n_layers = len(kept)
    for i, layer in enumerate(getattr(owner, attribute)):
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
    n = names(model)
    for group, heads, layer in zip(head_groups(model), kept, layers(model), strict=True):
        cut(group, heads)
        attention = _part(layer, n.attention)
        setattr(attention, n.heads_attribute, len(heads))
        for width in ("all_head_size", "dim"):  # BERT's and DistilBERT's record of the attention width
            if hasattr(attention, width):
                setattr(attention, width, len(heads) * attention.attention_head_size)
    model.hf.config.num_attention_heads = counts.pop()


def keep_neurons(model: nn.Module, kept: list[list[int]]) -> None:
    """Keep FFN neurons `kept[l]` of layer l (the same count in every layer); config.intermediate_size follows."""
    counts = {len(k) for k in kept}
    if len(counts) != 1:
        raise UnprunableError(f"prune.transformer.mlp: an hf config describes one intermediate_size for every "
                              f"layer, got {[len(k) for k in kept]}")
    for group, neurons in zip(neuron_groups(model), kept, strict=True):
        cut(group, neurons)
    setattr(model.hf.config, names(model).intermediate_key, counts.pop())


def keep_hidden(model: nn.Module, kept: list[int]) -> None:
    """Keep hidden channels `kept` everywhere the stream is read or written; config.hidden_size follows."""
    cut(hidden_group(model), kept)
    model.hf.config.hidden_size = len(kept)


def check_describable(model: nn.Module) -> None:
    """UnprunableError unless config.json rebuilds exactly these shapes: from_pretrained gives every layer
    hidden_size / num_attention_heads per head, so the attention width must equal hidden_size."""
    config, n = model.hf.config, names(model)
    for i, layer in enumerate(layers(model)):
        attention, heads = _part(layer, n.attention), getattr(_part(layer, n.attention), n.heads_attribute)
        width = _part(layer, n.query).out_features
        if heads != config.num_attention_heads or width != config.hidden_size:
            raise UnprunableError(
                f"{HEADS_KEY} and {HIDDEN_KEY}: layer {i} has {heads} heads of "
                f"{attention.attention_head_size} ({width} channels) but hidden_size {config.hidden_size}; a "
                f"{config.model_type} config computes head size = hidden_size / num_attention_heads, so it "
                "cannot describe this model: prune heads and hidden width to the same fraction")
