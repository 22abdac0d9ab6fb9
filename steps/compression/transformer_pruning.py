"""Structured pruning of the ViT (vit.py): whole attention heads, MLP width, embedding width, whole blocks.

Every function makes the model physically smaller, in place, and returns it:
fewer parameters and MACs, plain dense layers, exportable to ONNX. Pruned
layers get new Parameter objects: build the optimizer after pruning. The
pruned widths are read back by `models.spec_of` (checkpoint.save calls it),
so a checkpoint rebuilds the pruned model from its spec.

Widths (heads, MLP hidden, embedding) use torch-pruning's DepGraph (Fang et
al. 2023): removing head h means removing its rows in each of the q, k and v
thirds of `qkv` and its columns of `proj`; removing embedding channel c means
removing it from the patch embedding, the class token, the position
embedding, every LayerNorm, the input of every qkv/fc1/head and the output
of every proj/fc2. DepGraph traces those couplings (through the reshape,
permute and unbind of the attention) so no slice is listed by hand here.
The units are chosen here rather than by `tp.pruner.BasePruner(num_heads=...,
prune_num_heads=True)`, because that pruner (1.6) removes ceil(ratio * heads)
heads, only when some channel ratio > 0 is set as well, and scores would
come from a different criterion registry than the activation one below;
choosing them here keeps exact counts ("keep round(n * (1 - amount)), at
least one") and one registry for all three widths.

Depth is hand-written: a pre-norm block is a residual update x + f(x), so
deleting it leaves a model that still runs, and no channel coupling exists
for DepGraph to resolve. Blocks are ranked by how much the output changes
when one is skipped on a calibration batch (Men et al. 2024, ShortGPT;
Muralidharan et al. 2024, Minitron), and the least important are removed
in one shot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from steps.compression import choices
from steps.compression.families.vit.model import Layout, ViT, model_layout
from steps.compression.structured import _taylor_gradients, target_widths
from steps.compression.training import evaluating

Calibration = tuple[torch.Tensor, torch.Tensor]
"""A labelled batch (x, y): images as the model takes them and class indices."""


class OutputNormImportance(tp.importance.Importance):
    """Mean square, over a calibration batch and all tokens, of what each unit outputs.

    For a head that is its attention output (the input of `proj`), for an MLP
    neuron its GELU activation (the input of `fc2`), for an embedding channel
    the residual stream entering the final LayerNorm: the input channels of
    the group's root layer. A head's score (the mean over its channels) is
    its output's squared norm divided by head_dim.
    """

    def __init__(self, model: nn.Module, calibration: Calibration) -> None:
        self.stats: dict[nn.Module, torch.Tensor] = {}

        def record(module: nn.Module, args) -> None:
            x = args[0].detach()
            self.stats[module] = x.pow(2).reshape(-1, x.shape[-1]).mean(0)

        layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.LayerNorm)]
        hooks = [m.register_forward_pre_hook(record) for m in layers]
        try:
            with evaluating(model):
                model(calibration[0])
        finally:
            for hook in hooks:
                hook.remove()

    def __call__(self, group) -> torch.Tensor:
        root = group[0]
        return self.stats[root.dep.target.module][root.idxs].clone()


def l1_importance(model: nn.Module, calibration: Calibration | None) -> tp.importance.Importance:
    """sum |w| of the unit's weights in each coupled layer (q, k, v rows and proj columns for a head),
    averaged over the layers (torch-pruning's group L1); not normalised per group, so a global ranking
    compares blocks on one scale."""
    return tp.importance.GroupMagnitudeImportance(p=1, normalizer=None)


def taylor_importance(model: nn.Module, calibration: Calibration | None) -> tp.importance.Importance:
    """Molchanov et al. 2019: sum |w * dL/dw| over the unit's weights, cross-entropy on the batch."""
    _taylor_gradients(model, calibration)
    return tp.importance.GroupTaylorImportance(normalizer=None)


Criterion = Callable[[nn.Module, Calibration | None], tp.importance.Importance]
IMPORTANCES = choices.TRANSFORMER_IMPORTANCES  # name -> Criterion: l1, taylor, output_norm
NEEDS_CALIBRATION = {"taylor", "output_norm"}


def get_importance(name: str) -> Criterion:
    return IMPORTANCES.resolve(name)


def _check(model: nn.Module, amount: float, importance: str, calibration: Calibration | None, what: str) -> None:
    if not isinstance(model, ViT):
        raise TypeError(f"{what} pruning needs a vit.ViT, got {type(model).__name__}")
    if not 0 <= amount < 1:
        raise ValueError(f"{what} pruning amount must be in [0, 1), got {amount}")
    get_importance(importance)  # unknown names fail before any work
    if importance in NEEDS_CALIBRATION and calibration is None:
        raise ValueError(f"importance {importance!r} is data-driven: pass calibration=(x, y), a labelled batch")


def _graph(model: ViT, example_inputs: torch.Tensor) -> tp.DependencyGraph:
    """DepGraph of the model; the class token and position embedding are pruned along their last dim (D)."""
    unwrapped = [(p, 2) for p in (model.cls_token, model.pos_embed) if p is not None]
    with torch.enable_grad():  # DepGraph traces the autograd graph of one forward pass
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs,
                                                     unwrapped_parameters=unwrapped)


def _scores(model: ViT, importance: str, calibration: Calibration | None, groups) -> list[torch.Tensor]:
    """Per-channel scores of each full group, from one criterion instance; calibration gradients are cleared."""
    try:
        criterion = get_importance(importance)(model, calibration)
        return [criterion(g).detach().cpu() for g in groups]
    finally:
        model.zero_grad(set_to_none=True)  # calibration gradients are not training gradients


def _full(graph: tp.DependencyGraph, layer: nn.Module, fn, width: int):
    return graph.get_pruning_group(layer, fn, list(range(width)))


def _lowest(scores: torch.Tensor, count: int) -> list[int]:
    """Indices of the `count` lowest scores; ties go to the lower index, so the choice is deterministic."""
    return sorted(torch.argsort(scores, stable=True)[:count].tolist())


def _kept(n: int, amount: float) -> int:
    """round(n * (1 - amount)), at least one: structured.prune_channels' rule."""
    return max(1, round(n * (1 - amount)))


def head_scores(model: ViT, example_inputs: torch.Tensor, importance: str,
                calibration: Calibration | None = None) -> list[torch.Tensor]:
    """Score of every head, one (heads,) tensor per block: the mean of its channels' group scores."""
    _check(model, 0, importance, calibration, "head")
    graph = _graph(model, example_inputs)
    groups = [_full(graph, b.attn.proj, tp.prune_linear_in_channels, b.attn.proj.in_features) for b in model.blocks]
    channels = _scores(model, importance, calibration, groups)
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


def prune_heads(
    model: ViT,
    example_inputs: torch.Tensor,
    amount: float,
    importance: str,
    calibration: Calibration | None = None,
    global_pruning: bool = False,
) -> ViT:
    """Remove whole attention heads, in place; returns `model`.

    Local (default): each block keeps round(H * (1 - amount)) of its H heads,
    at least one. Global: the round(total * amount) lowest-scoring heads over
    all blocks go (the total kept rounded the same way), except that no block
    loses its last head, so blocks end with different head counts.
    head_dim is unchanged; each block's `num_heads` is updated.
    """
    _check(model, amount, importance, calibration, "head")
    if amount == 0:
        return model
    scores = head_scores(model, example_inputs, importance, calibration)
    if global_pruning:
        removed = _global_heads(scores, amount)
    else:
        removed = [_lowest(s, len(s) - _kept(len(s), amount)) for s in scores]
    graph = _graph(model, example_inputs)
    for block, heads in zip(model.blocks, removed, strict=True):
        if not heads:
            continue
        attn, d = block.attn, block.attn.head_dim
        idxs = [h * d + j for h in heads for j in range(d)]
        graph.get_pruning_group(attn.proj, tp.prune_linear_in_channels, idxs).prune()
        attn.num_heads -= len(heads)
    return model


def _keep_rounded(n: int, amount: float, round_to: int) -> int:
    """structured.target_widths' rule for one layer, never more than it has."""
    layer = nn.Identity()  # target_widths maps layers to widths; any key will do for one number
    return min(n, target_widths({layer: n}, amount, round_to)[layer])


def prune_mlp(
    model: ViT,
    example_inputs: torch.Tensor,
    amount: float,
    importance: str,
    calibration: Calibration | None = None,
    round_to: int = 1,
) -> ViT:
    """Remove `amount` of every block's MLP hidden neurons (fc1 rows, fc2 columns), in place; returns `model`.

    Each block keeps (1 - amount) of its hidden width, rounded down to a
    multiple of `round_to` (at least `round_to`, at most what it has): CPU
    kernels work in blocks of 8 or 16 (structured.target_widths).
    """
    _check(model, amount, importance, calibration, "MLP")
    if amount == 0:
        return model
    graph = _graph(model, example_inputs)
    groups = [_full(graph, b.mlp.fc2, tp.prune_linear_in_channels, b.mlp.fc2.in_features) for b in model.blocks]
    for block, scores in zip(model.blocks, _scores(model, importance, calibration, groups), strict=True):
        n = block.mlp.fc2.in_features
        drop = _lowest(scores, n - _keep_rounded(n, amount, round_to))
        if drop:
            graph.get_pruning_group(block.mlp.fc2, tp.prune_linear_in_channels, drop).prune()
    return model


def prune_embedding(
    model: ViT,
    example_inputs: torch.Tensor,
    amount: float,
    importance: str,
    calibration: Calibration | None = None,
    round_to: int = 1,
) -> ViT:
    """Remove `amount` of the residual stream's channels from every layer that reads or writes it, in place.

    The kept width is rounded as in `prune_mlp`. Head sizes are unchanged
    (qkv and proj lose inputs and outputs on the stream side only). Returns `model`.
    """
    _check(model, amount, importance, calibration, "embedding")
    if amount == 0:
        return model
    graph = _graph(model, example_inputs)
    width = model.norm.normalized_shape[0]
    group = _full(graph, model.norm, tp.prune_layernorm_out_channels, width)
    (scores,) = _scores(model, importance, calibration, [group])
    drop = _lowest(scores, width - _keep_rounded(width, amount, round_to))
    if drop:
        graph.get_pruning_group(model.norm, tp.prune_layernorm_out_channels, drop).prune()
    return model


def _logit_change(distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    def scores(model: ViT, x: torch.Tensor) -> torch.Tensor:
        full = model(x)
        changes = []
        for i in range(len(model.blocks)):
            block, model.blocks[i] = model.blocks[i], nn.Identity()
            try:
                changes.append(distance(full, model(x)))
            finally:
                model.blocks[i] = block
        return torch.stack(changes)

    return scores


def _kl(full: torch.Tensor, skipped: torch.Tensor) -> torch.Tensor:
    """KL(p_full || p_skipped) of the class distributions, mean over the batch."""
    return F.kl_div(F.log_softmax(skipped, 1), F.log_softmax(full, 1), reduction="batchmean", log_target=True)


def _cosine(full: torch.Tensor, skipped: torch.Tensor) -> torch.Tensor:
    """1 - cos(logits_full, logits_skipped), mean over the batch."""
    return (1 - F.cosine_similarity(full, skipped, dim=1)).mean()


def _block_influence(model: ViT, x: torch.Tensor) -> torch.Tensor:
    """ShortGPT's Block Influence: 1 - cos(block input, block output) per token, mean over tokens and batch.

    One forward pass; it measures how much a block turns the hidden state,
    not how much the logits care, so it is cheaper but less direct.
    """
    influence: dict[int, torch.Tensor] = {}

    def hook(i: int):
        def record(module, args, output) -> None:
            influence[i] = (1 - F.cosine_similarity(args[0], output, dim=-1)).mean()
        return record

    hooks = [b.register_forward_hook(hook(i)) for i, b in enumerate(model.blocks)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack([influence[i] for i in range(len(model.blocks))])


logit_kl = _logit_change(_kl)
logit_cosine = _logit_change(_cosine)
block_influence = _block_influence
BLOCK_METRICS = choices.BLOCK_METRICS  # name -> (model, x) -> (depth,) importance: logit_kl, logit_cosine, ...


def block_importance(model: ViT, x: torch.Tensor, metric: str = "logit_kl") -> torch.Tensor:
    """Importance of each block on the batch `x` (eval mode, no gradients): one float per block."""
    measure = BLOCK_METRICS.resolve(metric)
    if not isinstance(model, ViT):
        raise TypeError(f"depth pruning needs a vit.ViT, got {type(model).__name__}")
    with evaluating(model):
        return measure(model, x).float().cpu().clone()


def prune_depth(model: ViT, amount: float, calibration: Calibration, metric: str = "logit_kl") -> ViT:
    """Remove round(L * amount) of the L blocks (at least one stays), the least important on `calibration`.

    One shot: every block is scored on the unpruned model, as ShortGPT does.
    The kept blocks keep their order and are renumbered (blocks.0 ...), so a
    checkpoint's keys are those of a plain shallower ViT. Returns `model`.
    """
    if not 0 <= amount < 1:
        raise ValueError(f"depth pruning amount must be in [0, 1), got {amount}")
    scores = block_importance(model, calibration[0], metric)
    drop = set(_lowest(scores, len(scores) - _kept(len(scores), amount)))
    if drop:
        model.blocks = nn.Sequential(*(b for i, b in enumerate(model.blocks) if i not in drop))
    return model


@dataclass(frozen=True)
class TransformerPruning:
    """What `prune_transformer` removes: a fraction of blocks, heads, MLP width and embedding width."""

    depth: float = 0.0
    heads: float = 0.0
    mlp: float = 0.0
    embedding: float = 0.0
    importance: str = "l1"
    global_heads: bool = False
    depth_metric: str = "logit_kl"
    round_to: int = 1


def prune_transformer(model: ViT, example_inputs: torch.Tensor, plan: TransformerPruning,
                      calibration: Calibration | None = None) -> ViT:
    """Depth, then heads, then MLP width, then embedding width, each as its function above; returns `model`.

    Depth goes first: scoring the heads and neurons of a block about to be
    deleted would be wasted work. Each step scores the model the previous
    step left.
    """
    for amount in (plan.heads, plan.mlp, plan.embedding):  # fail before any work
        _check(model, amount, plan.importance, calibration, "transformer")
    if plan.depth_metric not in BLOCK_METRICS:
        raise ValueError(f"unknown block importance {plan.depth_metric!r}; choose one of {sorted(BLOCK_METRICS)}")
    if plan.depth:
        if calibration is None:
            raise ValueError("depth pruning measures blocks on data: pass calibration=(x, y), a labelled batch")
        prune_depth(model, plan.depth, calibration, plan.depth_metric)
    prune_heads(model, example_inputs, plan.heads, plan.importance, calibration, plan.global_heads)
    prune_mlp(model, example_inputs, plan.mlp, plan.importance, calibration, plan.round_to)
    prune_embedding(model, example_inputs, plan.embedding, plan.importance, calibration, plan.round_to)
    return model


def round_plan(original: Layout, model: ViT, fractions: TransformerPruning) -> TransformerPruning:
    """The plan that takes `model` to `fractions` of the ORIGINAL model's widths, as amounts of what it has now.

    An iterative prune calls this each round with the schedule's cumulative
    fractions: every target is computed from `original` (heads and depth
    keep round(n * (1 - f)), at least one; MLP and embedding widths are rounded
    to `round_to` as in `prune_mlp`), so rounding never compounds over
    rounds. Each amount is 1 - target / current, which the pruning functions
    turn back into exactly the target (their round() absorbs the float error).
    Local head pruning assumes the blocks share their head count, as they do
    unless heads were pruned globally; a global head target counts the blocks
    the model has now, so apply the depth part of a round first.
    """
    now = model_layout(model)

    def amount(target: int, current: int) -> float:
        return max(0.0, 1 - target / current)

    depth = amount(_kept(len(original.heads), fractions.depth), len(now.heads))
    if fractions.global_heads:
        blocks = len(now.heads)
        heads = amount(max(blocks, round(blocks * original.heads[0] * (1 - fractions.heads))), sum(now.heads))
    else:
        heads = amount(_kept(original.heads[0], fractions.heads), max(now.heads))
    mlp = amount(_keep_rounded(original.mlp[0], fractions.mlp, fractions.round_to), max(now.mlp))
    embedding = amount(_keep_rounded(original.embed_dim, fractions.embedding, fractions.round_to), now.embed_dim)
    return dataclasses.replace(fractions, depth=depth, heads=heads, mlp=mlp, embedding=embedding)
