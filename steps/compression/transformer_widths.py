"""Width pruning of the ViT (vit.py): whole attention heads, MLP hidden neurons, embedding channels.

Every function makes the model physically smaller, in place, and returns it. Widths use torch-pruning's
DepGraph (Fang et al. 2023, "DepGraph: Towards Any Structural Pruning"): removing head h means removing its
rows in each of the q, k and v thirds of `qkv` and its columns of `proj`; removing embedding channel c
means removing it from the patch embedding, the class token, the position embedding, every LayerNorm, the
input of every qkv/fc1/head and the output of every proj/fc2. DepGraph traces those couplings (through the
reshape, permute and unbind of the attention) so no slice is listed by hand here.
The units are chosen here rather than by `tp.pruner.BasePruner(num_heads=..., prune_num_heads=True)`,
because that pruner (1.6) removes ceil(ratio * heads) heads, only when some channel ratio > 0 is set as
well; choosing them here keeps exact counts (rounding.keep) and one criterion registry for all three widths.
Scores are raw (normalizer None), so a global head ranking compares blocks on one scale.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from steps.compression import choices
from steps.compression.criteria import Calibration, Importance, criterion, lowest
from steps.compression.rounding import keep
from steps.compression.families.vit.model import ViT


def checked_criterion(model: nn.Module, amount: float, importance: str, calibration: Calibration | None,
                      what: str) -> Importance:
    """The criterion `importance`, it and every setting checked before any work."""
    if not isinstance(model, ViT):
        raise TypeError(f"{what} pruning needs a vit.ViT, got {type(model).__name__}")
    if not 0 <= amount < 1:
        raise ValueError(f"{what} pruning amount must be in [0, 1), got {amount}")
    scores = criterion(choices.TRANSFORMER_IMPORTANCES, importance)
    scores.check(model, calibration)
    return scores


def _graph(model: ViT, example_inputs: torch.Tensor) -> tp.DependencyGraph:
    """DepGraph of the model; the class token and position embedding are pruned along their last dim (D)."""
    unwrapped = [(p, 2) for p in (model.cls_token, model.pos_embed) if p is not None]
    with torch.enable_grad():  # DepGraph traces the autograd graph of one forward pass
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs,
                                                     unwrapped_parameters=unwrapped)


def _scores(model: ViT, scores: Importance, calibration: Calibration | None, groups) -> list[torch.Tensor]:
    """Per-channel scores of each full group, from one prepared criterion; calibration gradients are cleared."""
    try:
        scores.prepare(model, calibration)
        return [scores(g).detach().cpu() for g in groups]
    finally:
        model.zero_grad(set_to_none=True)  # calibration gradients are not training gradients


def _full(graph: tp.DependencyGraph, layer: nn.Module, fn, width: int):
    return graph.get_pruning_group(layer, fn, list(range(width)))


def head_scores(model: ViT, example_inputs: torch.Tensor, importance: str,
                calibration: Calibration | None = None) -> list[torch.Tensor]:
    """Score of every head, one (heads,) tensor per block: the mean of its channels' group scores."""
    scores = checked_criterion(model, 0, importance, calibration, "head")
    graph = _graph(model, example_inputs)
    groups = [_full(graph, b.attn.proj, tp.prune_linear_in_channels, b.attn.proj.in_features) for b in model.blocks]
    channels = _scores(model, scores, calibration, groups)
    return [c.view(b.attn.num_heads, b.attn.head_dim).mean(1) for c, b in zip(channels, model.blocks, strict=True)]


def _global_heads(scores: list[torch.Tensor], amount: float) -> list[list[int]]:
    """Heads to remove per block: the round(total * amount) lowest over all blocks, each block keeping one."""
    total = sum(len(s) for s in scores)
    budget = total - max(len(scores), round(total * (1 - amount)))
    flat = torch.cat(scores)
    owner = [(b, h) for b, s in enumerate(scores) for h in range(len(s))]
    removed: list[list[int]] = [[] for _ in scores]
    for i in torch.argsort(flat, stable=True).tolist():
        if budget <= 0:
            break
        b, h = owner[i]
        if len(scores[b]) - len(removed[b]) > 1:
            removed[b].append(h)
            budget -= 1
    return [sorted(r) for r in removed]


def prune_heads(model: ViT, example_inputs: torch.Tensor, amount: float, importance: str,
                calibration: Calibration | None = None, global_pruning: bool = False) -> ViT:
    """Remove whole attention heads, in place; returns `model`.

    Local (default): each block keeps round(H * (1 - amount)) of its H heads, at least one
    (rounding.keep). Global: the round(total * amount) lowest-scoring heads over all blocks go (the total
    kept rounded the same way), except that no block loses its last head, so blocks end with different
    head counts. head_dim is unchanged; each block's `num_heads` is updated.
    """
    checked_criterion(model, amount, importance, calibration, "head")
    if amount == 0:
        return model
    scores = head_scores(model, example_inputs, importance, calibration)
    if global_pruning:
        removed = _global_heads(scores, amount)
    else:
        removed = [lowest(s, len(s) - keep(len(s), 1 - amount)) for s in scores]
    graph = _graph(model, example_inputs)
    for block, heads in zip(model.blocks, removed, strict=True):
        if not heads:
            continue
        attn, d = block.attn, block.attn.head_dim
        idxs = [h * d + j for h in heads for j in range(d)]
        graph.get_pruning_group(attn.proj, tp.prune_linear_in_channels, idxs).prune()
        attn.num_heads -= len(heads)
    return model


def prune_mlp(model: ViT, example_inputs: torch.Tensor, amount: float, importance: str,
              calibration: Calibration | None = None, round_to: int = 1) -> ViT:
    """Remove `amount` of every block's MLP hidden neurons (fc1 rows, fc2 columns), in place; returns `model`.

    Each block keeps (1 - amount) of its hidden width, rounded by rounding.keep (down to a multiple of
    `round_to`, at least `round_to`, at most what it has).
    """
    scores = checked_criterion(model, amount, importance, calibration, "MLP")
    if amount == 0:
        return model
    graph = _graph(model, example_inputs)
    groups = [_full(graph, b.mlp.fc2, tp.prune_linear_in_channels, b.mlp.fc2.in_features) for b in model.blocks]
    for block, block_scores in zip(model.blocks, _scores(model, scores, calibration, groups), strict=True):
        n = block.mlp.fc2.in_features
        drop = lowest(block_scores, n - keep(n, 1 - amount, round_to))
        if drop:
            graph.get_pruning_group(block.mlp.fc2, tp.prune_linear_in_channels, drop).prune()
    return model


def prune_embedding(model: ViT, example_inputs: torch.Tensor, amount: float, importance: str,
                    calibration: Calibration | None = None, round_to: int = 1) -> ViT:
    """Remove `amount` of the residual stream's channels from every layer that reads or writes it, in place.

    The kept width is rounded as in `prune_mlp`. Head sizes are unchanged (qkv and proj lose inputs and
    outputs on the stream side only). Returns `model`.
    """
    scores = checked_criterion(model, amount, importance, calibration, "embedding")
    if amount == 0:
        return model
    graph = _graph(model, example_inputs)
    width = model.norm.normalized_shape[0]
    group = _full(graph, model.norm, tp.prune_layernorm_out_channels, width)
    (channel_scores,) = _scores(model, scores, calibration, [group])
    drop = lowest(channel_scores, width - keep(width, 1 - amount, round_to))
    if drop:
        graph.get_pruning_group(model.norm, tp.prune_layernorm_out_channels, drop).prune()
    return model
