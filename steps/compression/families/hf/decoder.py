"""Structured slicing of a Hugging Face causal LM with grouped-query attention (Llama, Qwen2, Mistral).

Minitron's axes (Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge Distillation"):
whole key-value groups, MLP neurons, hidden (embedding) channels and whole layers, cut by hand because
Torch-Pruning's dependency graph hangs on grouped-query attention and transformers 5 has no prune_heads.
The layout is the one these models share: `model.model.embed_tokens`, `model.model.layers[i]` with
`self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`, `input_layernorm`, `post_attention_layernorm`, then
`model.model.norm` and `model.lm_head` (tied to the embeddings when config.tie_word_embeddings).

The result must reload with stock `AutoModelForCausalLM.from_pretrained`, which rebuilds every layer from
config.json, so every width is uniform over the layers (each layer chooses its own units by importance, the
same number in each) and the config follows each cut. Heads go by key-value group: a KV head and the
num_attention_heads / num_key_value_heads query heads that read it leave together, so the ratio (the
attention's num_key_value_groups) never changes. config.head_dim is written explicitly: cutting heads or
hidden channels leaves each head's size as it was, which hidden_size / num_attention_heads would not.
Each width is one or two `Group`s of hf/pruning.py (the unit spans the same slices of every tensor), so the
cut and the weight sums are the encoder's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from huggingface_hub.errors import StrictDataclassError
from torch import nn

from steps.compression.families.hf.pruning import Cut, Group, UnprunableError, cut
from steps.compression.rounding import keep

HEADS_KEY = "prune.transformer.heads"
MLP_KEY = "prune.transformer.mlp"
HIDDEN_KEY = "prune.transformer.embedding"
DEPTH_KEY = "prune.transformer.depth"

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
NORMS = ("input_layernorm", "post_attention_layernorm")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """`model.model.layers`, after checking the layout (UnprunableError naming what is missing)."""
    check_layout(model)
    return model.model.layers


def check_layout(model: nn.Module) -> None:
    """UnprunableError naming the model type and the first part of the Llama layout it lacks."""
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    parts = [("model.embed_tokens", nn.Embedding), ("model.norm", nn.Module), ("lm_head", nn.Linear),
             ("model.layers", nn.ModuleList)]
    for path, kind in parts:
        if not isinstance(_get(model, path), kind):
            raise UnprunableError(f"a {model_type} model has no {kind.__name__} at {path}: the decoder slicing knows "
                                  "the Llama layout (model.layers.N.self_attn.q_proj, mlp.gate_proj, ...)")
    for i, layer in enumerate(model.model.layers):
        for path in [*(f"self_attn.{p}" for p in ATTENTION), *(f"mlp.{p}" for p in MLP)]:
            if not isinstance(_get(layer, path), nn.Linear):
                raise UnprunableError(f"a {model_type} model's layer {i} has no Linear at {path}: the decoder "
                                      "slicing knows the Llama layout")
        for path in NORMS:
            if _get(layer, path) is None:
                raise UnprunableError(f"a {model_type} model's layer {i} has no {path}")


def _get(module: nn.Module, path: str) -> nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


@dataclass(frozen=True)
class DecoderShape:
    """What a Llama-style config describes: layers, query heads, KV heads, MLP width, hidden width."""

    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    hidden: int


def shape_of(model: nn.Module) -> DecoderShape:
    c = model.config
    return DecoderShape(c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size,
                        c.hidden_size)


def head_dim(model: nn.Module) -> int:
    """Each head's size: config.head_dim where set, else hidden_size / num_attention_heads (older configs)."""
    c = model.config
    return getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads


def heads_per_group(model: nn.Module) -> int:
    c = model.config
    return c.num_attention_heads // c.num_key_value_heads


def tied(model: nn.Module) -> bool:
    """Whether the LM head reads the embedding matrix itself (one Parameter), so it is cut once."""
    return model.lm_head.weight is model.model.embed_tokens.weight


def _cuts(module: nn.Linear, dim: int) -> tuple[Cut, ...]:
    """The weight along `dim`, and the bias when `dim` is the output (Qwen2's q/k/v have biases)."""
    found = [Cut(module, "weight", dim)]
    if dim == 0 and module.bias is not None:
        found.append(Cut(module, "bias", 0))
    return tuple(found)


def kv_groups(model: nn.Module) -> list[tuple[Group, Group]]:
    """Per layer, one unit per KV group, as two Groups cut with the same indices: the query rows and output
    columns of its heads (heads_per_group x head_dim entries each), and its key and value rows (head_dim
    each). Query head h reads KV head h // heads_per_group (repeat_kv), so a group's heads are contiguous."""
    d, r = head_dim(model), heads_per_group(model)
    groups = []
    for layer in decoder_layers(model):
        a = layer.self_attn
        units = a.k_proj.out_features // d
        queries = Group((*_cuts(a.q_proj, 0), *_cuts(a.o_proj, 1)), units, r * d, ((a.o_proj, "input"),))
        keys = Group((*_cuts(a.k_proj, 0), *_cuts(a.v_proj, 0)), units, d, ())
        groups.append((queries, keys))
    return groups


def neuron_groups(model: nn.Module) -> list[Group]:
    """Per layer, one unit per MLP neuron: its gate and up rows, its down column."""
    groups = []
    for layer in decoder_layers(model):
        m = layer.mlp
        groups.append(Group((*_cuts(m.gate_proj, 0), *_cuts(m.up_proj, 0), *_cuts(m.down_proj, 1)),
                            m.down_proj.in_features, 1, ((m.down_proj, "input"),)))
    return groups


def hidden_group(model: nn.Module) -> Group:
    """One unit per hidden channel wherever the residual stream is read or written: the embedding columns,
    every q/k/v/gate/up input column, every o/down output row, every RMSNorm weight, the final norm and the
    LM head's input columns (once, with the embeddings, when tied). Probes: every layer's two RMSNorm
    outputs (Minitron's embedding-channel activations)."""
    base = model.model
    cuts = [Cut(base.embed_tokens, "weight", 1)]
    probes = []
    for layer in decoder_layers(model):
        a, m = layer.self_attn, layer.mlp
        for linear in (a.q_proj, a.k_proj, a.v_proj, m.gate_proj, m.up_proj):
            cuts += _cuts(linear, 1)
        cuts += [*_cuts(a.o_proj, 0), *_cuts(m.down_proj, 0)]
        for name in NORMS:
            norm = layer.get_submodule(name)
            cuts.append(Cut(norm, "weight", 0))
            probes.append((norm, "output"))
    cuts.append(Cut(base.norm, "weight", 0))
    if not tied(model):
        cuts += _cuts(model.lm_head, 1)
    return Group(tuple(cuts), base.embed_tokens.embedding_dim, 1, tuple(probes))


def _per_layer(keep: dict[int, list[int]] | list[int] | list[list[int]], layers: int, key: str) -> list[list[int]]:
    """Kept units per layer from one list for every layer, a list per layer, or {layer: list} naming each
    layer; refused unless every layer keeps the same number (an hf config has one width for all)."""
    if isinstance(keep, dict):
        missing = sorted(set(range(layers)) - set(keep))
        if missing or len(keep) != layers:
            raise UnprunableError(f"{key}: name every layer 0..{layers - 1} once; missing {missing}")
        per_layer = [sorted(keep[i]) for i in range(layers)]
    elif keep and isinstance(keep[0], list | tuple):
        if len(keep) != layers:
            raise UnprunableError(f"{key}: {len(keep)} lists of kept units for {layers} layers")
        per_layer = [sorted(k) for k in keep]
    else:
        per_layer = [sorted(keep)] * layers
    counts = sorted({len(k) for k in per_layer})
    if len(counts) != 1 or counts[0] == 0:
        raise UnprunableError(f"{key}: an hf config describes one width for every layer, so every layer keeps the "
                              f"same number of units (at least one); got {[len(k) for k in per_layer]}")
    return per_layer


def _check_units(kept: list[int], units: int, key: str) -> None:
    if len(set(kept)) != len(kept) or any(not 0 <= u < units for u in kept):
        raise UnprunableError(f"{key}: kept units {kept} must be distinct indices in 0..{units - 1}")


def keep_kv_groups(model: nn.Module, keep: dict[int, list[int]] | list[int] | list[list[int]]) -> None:
    """Keep KV groups `keep` (the same ones everywhere, one list per layer, or {layer: groups}), each with
    its query heads; config.num_key_value_heads and num_attention_heads follow, config.head_dim stays."""
    model.config.head_dim = head_dim(model)
    r = heads_per_group(model)
    groups = kv_groups(model)
    per_layer = _per_layer(keep, len(groups), HEADS_KEY)
    for (queries, keys), kept in zip(groups, per_layer, strict=True):
        _check_units(kept, queries.units, HEADS_KEY)
        cut(queries, kept)
        cut(keys, kept)
    model.config.num_key_value_heads = len(per_layer[0])
    model.config.num_attention_heads = len(per_layer[0]) * r


def keep_mlp_neurons(model: nn.Module, keep: dict[int, list[int]] | list[int] | list[list[int]]) -> None:
    """Keep MLP neurons `keep` (as keep_kv_groups takes them); config.intermediate_size follows."""
    groups = neuron_groups(model)
    per_layer = _per_layer(keep, len(groups), MLP_KEY)
    for group, kept in zip(groups, per_layer, strict=True):
        _check_units(kept, group.units, MLP_KEY)
        cut(group, kept)
    for layer in decoder_layers(model):
        layer.mlp.intermediate_size = len(per_layer[0])
    model.config.intermediate_size = len(per_layer[0])


def keep_hidden_channels(model: nn.Module, keep: list[int]) -> None:
    """Keep hidden channels `keep` everywhere the residual stream goes; tied embeddings stay tied;
    config.hidden_size follows and config.head_dim stays."""
    model.config.head_dim = head_dim(model)
    was_tied = tied(model)
    group = hidden_group(model)
    kept = sorted(keep)
    _check_units(kept, group.units, HIDDEN_KEY)
    cut(group, kept)
    if was_tied:
        model.lm_head.weight = model.model.embed_tokens.weight
        model.lm_head.in_features = len(kept)
    for layer in decoder_layers(model):
        layer.hidden_size = layer.mlp.hidden_size = len(kept)
    model.config.hidden_size = len(kept)


def drop_layers(model: nn.Module, layers: list[int]) -> None:
    """Remove decoder layers `layers`; the rest are renumbered 0.. (weight keys of a plain shallower model)
    with their attention's layer_idx, the slot the KV cache keeps them in (two layers writing one slot
    would read each other's keys in generation); config.num_hidden_layers and config.layer_types follow."""
    old = decoder_layers(model)
    drop = set(layers)
    if not drop <= set(range(len(old))) or len(drop) >= len(old):
        raise UnprunableError(f"{DEPTH_KEY}: layers to drop {sorted(layers)} must be some, not all, of "
                              f"0..{len(old) - 1}")
    kept = [i for i in range(len(old)) if i not in drop]
    model.model.layers = nn.ModuleList(old[i] for i in kept)
    for i, layer in enumerate(model.model.layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    config = model.config
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [config.layer_types[i] for i in kept]
    config.num_hidden_layers = len(kept)


def target_shape(model: nn.Module, *, heads: float = 0.0, mlp: float = 0.0, hidden: float = 0.0,
                 layers: float = 0.0, round_to: int = 1) -> DecoderShape:
    """The shape that removes these fractions of `model`'s layers, heads, MLP neurons and hidden channels.

    Heads go by KV group (`heads` is the fraction of groups removed), so num_attention_heads stays a multiple
    of num_key_value_heads; `round_to` rounds the MLP width. A config that validates its shape (Llama's:
    hidden_size a multiple of num_attention_heads) gets the hidden width rounded down until it does."""
    for key, fraction in ((HEADS_KEY, heads), (MLP_KEY, mlp), (HIDDEN_KEY, hidden), (DEPTH_KEY, layers)):
        if not 0.0 <= fraction < 1.0:
            raise UnprunableError(f"{key}: the fraction to remove must be in [0, 1), got {fraction}")
    now, r = shape_of(model), heads_per_group(model)
    groups = keep(now.kv_heads, 1 - heads)
    width = keep(now.hidden, 1 - hidden)
    while width > 0 and not describable(model, DecoderShape(now.layers, groups * r, groups, now.intermediate, width)):
        width -= 1
    shape = DecoderShape(keep(now.layers, 1 - layers), groups * r, groups,
                         keep(now.intermediate, 1 - mlp, round_to), width)
    check_shape(model, shape)
    return shape


def describable(model: nn.Module, shape: DecoderShape) -> bool:
    """Whether `model`'s config class accepts `shape` (its own validators, e.g. Llama's hidden % heads)."""
    try:
        config = model.config.__class__.from_dict({**model.config.to_dict(), **_config_values(model, shape)})
        if hasattr(config, "validate"):
            config.validate()
    except (ValueError, TypeError, StrictDataclassError):
        return False
    return True


def _config_values(model: nn.Module, shape: DecoderShape) -> dict[str, int]:
    return {"num_hidden_layers": shape.layers, "num_attention_heads": shape.heads,
            "num_key_value_heads": shape.kv_heads, "intermediate_size": shape.intermediate,
            "hidden_size": shape.hidden, "head_dim": head_dim(model)}


def check_shape(model: nn.Module, shape: DecoderShape) -> None:
    """UnprunableError, naming the key, for a shape the slicing cannot reach or a config cannot describe:
    heads are cut by whole KV group, so num_attention_heads must be kept groups x heads per group."""
    now, r = shape_of(model), heads_per_group(model)
    if shape.kv_heads < 1 or shape.heads != shape.kv_heads * r:
        raise UnprunableError(
            f"{HEADS_KEY}: {shape.heads} attention heads over {shape.kv_heads} key-value heads; heads are cut by "
            f"whole KV group ({r} query heads per KV head), so num_attention_heads must be num_key_value_heads x "
            f"{r} (num_attention_heads % num_key_value_heads == 0, same ratio): ask for a multiple of {r} heads")
    for key, name, value, limit in ((HEADS_KEY, "num_key_value_heads", shape.kv_heads, now.kv_heads),
                                    (MLP_KEY, "intermediate_size", shape.intermediate, now.intermediate),
                                    (HIDDEN_KEY, "hidden_size", shape.hidden, now.hidden),
                                    (DEPTH_KEY, "num_hidden_layers", shape.layers, now.layers)):
        if not 1 <= value <= limit:
            raise UnprunableError(f"{key}: {name} {value} must be between 1 and the model's {limit}")
    if not describable(model, shape):
        raise UnprunableError(f"{HIDDEN_KEY} and {HEADS_KEY}: a {model.config.model_type} config refuses "
                              f"{asdict(shape)} (its validators, e.g. hidden_size % num_attention_heads == 0)")


def check_describable(model: nn.Module) -> None:
    """UnprunableError unless config.json rebuilds exactly these tensors: every layer's shapes are the ones
    the config gives, and the config class accepts its values (it validates them on save and on load)."""
    c, d = model.config, head_dim(model)
    expected = {"self_attn.q_proj": (c.num_attention_heads * d, c.hidden_size),
                "self_attn.k_proj": (c.num_key_value_heads * d, c.hidden_size),
                "self_attn.v_proj": (c.num_key_value_heads * d, c.hidden_size),
                "self_attn.o_proj": (c.hidden_size, c.num_attention_heads * d),
                "mlp.gate_proj": (c.intermediate_size, c.hidden_size),
                "mlp.up_proj": (c.intermediate_size, c.hidden_size),
                "mlp.down_proj": (c.hidden_size, c.intermediate_size)}
    layers = decoder_layers(model)
    if len(layers) != c.num_hidden_layers:
        raise UnprunableError(f"{DEPTH_KEY}: {len(layers)} layers but num_hidden_layers {c.num_hidden_layers}")
    for i, layer in enumerate(layers):
        for path, shape in expected.items():
            found = tuple(layer.get_submodule(path).weight.shape)
            if found != shape:
                raise UnprunableError(f"layer {i} {path} is {found} but the config describes {shape}")
    if hasattr(c, "validate"):
        c.validate()
