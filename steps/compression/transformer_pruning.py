"""Structured pruning of the ViT (vit.py): whole blocks, attention heads, MLP width, embedding width.

A plan (`TransformerPruning`) says what fraction of each goes; `prune_transformer` applies it with the
width functions of transformer_widths.py (DepGraph) and the depth function of transformer_depth.py, and
`TransformerPruningMethod` is `prune.method transformer`: each fraction of `prune.transformer` follows
the schedule over the rounds. Every function makes the model physically smaller, in place: fewer
parameters and MACs, plain dense layers, exportable to ONNX. Pruned layers get new Parameter objects:
build the optimizer after pruning. The pruned widths are read back by `models.spec_of` (checkpoint.save
calls it), so a checkpoint rebuilds the pruned model from its spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from steps.compression import choices
from steps.compression.criteria import Calibration, criterion
from steps.compression.families.vit.model import Layout, ViT, model_layout
from steps.compression.prune_method import CALIBRATION_IMAGES, PruneMethod
from steps.compression.rounding import keep
from steps.compression.schedules import per_round
from steps.compression.training import Split
from steps.compression.transformer_depth import prune_depth
from steps.compression.transformer_widths import checked_criterion, prune_embedding, prune_heads, prune_mlp


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
    """Depth, then heads, then MLP width, then embedding width, each as its function; returns `model`.

    Depth goes first: scoring the heads and neurons of a block about to be deleted would be wasted work.
    Each step scores the model the previous step left.
    """
    for amount in (plan.heads, plan.mlp, plan.embedding):  # fail before any work
        checked_criterion(model, amount, plan.importance, calibration, "transformer")
    blocks = criterion(choices.BLOCK_METRICS, plan.depth_metric)
    if plan.depth:
        blocks.check(model, calibration)
        prune_depth(model, plan.depth, calibration, plan.depth_metric)
    prune_heads(model, example_inputs, plan.heads, plan.importance, calibration, plan.global_heads)
    prune_mlp(model, example_inputs, plan.mlp, plan.importance, calibration, plan.round_to)
    prune_embedding(model, example_inputs, plan.embedding, plan.importance, calibration, plan.round_to)
    return model


def round_plan(original: Layout, model: ViT, fractions: TransformerPruning) -> TransformerPruning:
    """The plan that takes `model` to `fractions` of the ORIGINAL model's widths, as amounts of what it has now.

    An iterative prune calls this each round with the schedule's cumulative fractions: every target is
    computed from `original` by rounding.keep (heads and depth to whole units, MLP and embedding widths to
    `round_to`), so rounding never compounds over rounds. Each amount is 1 - target / current, which the
    pruning functions turn back into exactly the target (their round() absorbs the float error).
    Local head pruning assumes the blocks share their head count, as they do unless heads were pruned
    globally; a global head target counts the blocks the model has now, so apply the depth part of a round
    first.
    """
    now = model_layout(model)

    def amount(target: int, current: int) -> float:
        return max(0.0, 1 - target / current)

    depth = amount(keep(len(original.heads), 1 - fractions.depth), len(now.heads))
    if fractions.global_heads:
        blocks = len(now.heads)
        heads = amount(max(blocks, round(blocks * original.heads[0] * (1 - fractions.heads))), sum(now.heads))
    else:
        heads = amount(keep(original.heads[0], 1 - fractions.heads), max(now.heads))
    mlp = amount(keep(original.mlp[0], 1 - fractions.mlp, fractions.round_to), max(now.mlp))
    embedding = amount(keep(original.embed_dim, 1 - fractions.embedding, fractions.round_to), now.embed_dim)
    return dataclasses.replace(fractions, depth=depth, heads=heads, mlp=mlp, embedding=embedding)


class TransformerPruningMethod(PruneMethod):
    """prune.method transformer (a vit): every nonzero fraction of `prune.transformer` follows
    `prune.schedule` to its final value; each round goes from the original layout to that round's fractions."""

    def __init__(self, model: nn.Module, cfg) -> None:
        super().__init__(model, cfg)
        self.original = model_layout(model)
        t = cfg.transformer

        def steps(final: float) -> list[float]:
            return per_round(cfg.schedule, final, cfg.rounds)

        self.fractions = [
            TransformerPruning(depth=d, heads=h, mlp=m, embedding=e, importance=t.importance,
                               global_heads=t.global_heads, depth_metric=t.depth_metric, round_to=cfg.round_to)
            for d, h, m, e in zip(steps(t.depth), steps(t.heads), steps(t.mlp), steps(t.embedding), strict=True)]

    def targets(self) -> list[float]:
        """The largest fraction each round reaches (prune.target_sparsity is unused)."""
        return [max(f.depth, f.heads, f.mlp, f.embedding) for f in self.fractions]

    def prune_round(self, model: nn.Module, round_no: int, train: Split, device: torch.device) -> None:
        fractions = self.fractions[round_no - 1]
        calibration = train.batch(torch.arange(min(CALIBRATION_IMAGES, len(train))), device)
        example = calibration[0][:2]
        # Blocks first: the global head target counts the blocks that remain.
        depth_only = dataclasses.replace(round_plan(self.original, model, fractions), heads=0, mlp=0, embedding=0)
        prune_transformer(model, example, depth_only, calibration)
        prune_transformer(model, example, round_plan(self.original, model, fractions), calibration)
