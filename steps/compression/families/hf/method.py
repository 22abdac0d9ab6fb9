"""prune.method transformer on an hf encoder: whole layers, attention heads, FFN width and hidden width.

The same `prune.transformer` knobs as the ViT's (depth, heads, mlp, embedding, importance, depth_metric; the
rounds follow prune.schedule), cut by hf/pruning.py and scored by hf/importance.py, with what a
`from_pretrained` config can describe:
- every layer keeps the same number of heads and FFN neurons (each layer chooses its own by importance), so
  prune.transformer.global_heads, which gives layers different head counts, is refused;
- a BERT config has no head size of its own (its attention computes hidden_size / num_attention_heads), and
  heads keep their size here (cutting inside heads would change every attention score's scale), so the
  hidden width is counted in whole heads: kept hidden = kept heads x head size. `heads` and `embedding`
  are therefore one axis: a plan whose two fractions keep different head counts (heads 0.5 with embedding
  0, say) is refused before any work, naming both keys; give them the same fraction. prune.round_to
  rounds the FFN width (the hidden width moves in heads of head size channels).
Every target is computed from the ORIGINAL shape each round (rounding.keep), so rounding never compounds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from steps.compression.criteria import Calibration, lowest
from steps.compression.families.hf import importance
from steps.compression.families.hf.pruning import (
    HEADS_KEY, HIDDEN_KEY, UnprunableError, check_describable, check_layout, head_groups, head_size, hidden_group,
    intermediate_size, keep_heads, keep_hidden, keep_layers, keep_neurons, neuron_groups)
from steps.compression.prune_method import CALIBRATION_IMAGES, PruneMethod
from steps.compression.rounding import keep
from steps.compression.schedules import per_round
from steps.compression.training import Split


@dataclass(frozen=True)
class Shape:
    """What an hf config describes of an encoder's size: layers, heads per layer, FFN width, hidden width."""

    layers: int
    heads: int
    intermediate: int
    hidden: int


def shape_of(model: nn.Module) -> Shape:
    config = model.hf.config  # DistilBERT's config maps these names onto n_layers, n_heads and dim
    return Shape(config.num_hidden_layers, config.num_attention_heads, intermediate_size(model), config.hidden_size)


@dataclass(frozen=True)
class Fractions:
    """The fractions of the original model a round removes (prune.transformer's keys)."""

    depth: float = 0.0
    heads: float = 0.0
    mlp: float = 0.0
    embedding: float = 0.0


def target_shape(original: Shape, size: int, fractions: Fractions, round_to: int = 1) -> Shape:
    """The shape that removes `fractions` of `original` (heads of `size` channels), or UnprunableError naming
    prune.transformer.heads and .embedding when they keep different head counts (see the module docstring)."""
    by_heads = keep(original.heads, 1 - fractions.heads)
    by_width = keep(original.heads, 1 - fractions.embedding)
    if by_heads != by_width:
        raise UnprunableError(
            f"{HEADS_KEY} {fractions.heads} keeps {by_heads} of {original.heads} heads but {HIDDEN_KEY} "
            f"{fractions.embedding} keeps {by_width * size} of {original.hidden} hidden channels ({by_width} heads "
            f"of {size}): an hf config computes head size = hidden_size / num_attention_heads, so the hidden width "
            f"must be kept heads x {size}; set {HEADS_KEY} and {HIDDEN_KEY} to the same fraction")
    return Shape(layers=keep(original.layers, 1 - fractions.depth), heads=by_heads,
                 intermediate=keep(original.intermediate, 1 - fractions.mlp, round_to), hidden=by_heads * size)


def _kept(scores: torch.Tensor, count: int) -> list[int]:
    """The `count` highest-scoring units, in their original order (lowest() breaks ties by index)."""
    drop = set(lowest(scores, len(scores) - count))
    return [i for i in range(len(scores)) if i not in drop]


def prune_encoder(model: nn.Module, target: Shape, criterion: str, depth_metric: str,
                  calibration: Calibration | None) -> nn.Module:
    """Take `model` (an HFClassifier) to `target` in place: layers, then heads, FFN neurons and hidden channels,
    each scored on the model the previous step left; config.json then describes it. Returns `model`.

    Layers first: scoring the heads of a layer about to go would be wasted. A width already at its target is
    left alone, so an empty plan changes nothing.
    """
    check_layout(model)
    now, size = shape_of(model), head_size(model)
    if target.hidden != target.heads * size:
        raise UnprunableError(f"{HEADS_KEY} and {HIDDEN_KEY}: {target.heads} heads of {size} need hidden width "
                              f"{target.heads * size}, not {target.hidden} (an hf config computes head size = "
                              "hidden_size / num_attention_heads)")
    if target.layers < now.layers:
        keep_layers(model, _kept(importance.layer_scores(model, depth_metric, calibration), target.layers))
    if target.heads < now.heads:
        per_layer = importance.scores(model, criterion, head_groups(model), calibration)
        keep_heads(model, [_kept(s, target.heads) for s in per_layer])
    if target.intermediate < now.intermediate:
        per_layer = importance.scores(model, criterion, neuron_groups(model), calibration)
        keep_neurons(model, [_kept(s, target.intermediate) for s in per_layer])
    if target.hidden < now.hidden:
        (channels,) = importance.scores(model, criterion, [hidden_group(model)], calibration)
        keep_hidden(model, _kept(channels, target.hidden))
    check_describable(model)
    return model


class HFTransformerPruning(PruneMethod):
    """prune.method transformer on an hf teacher (the hf family's own, hooked in by Family.prune_method_classes):
    every nonzero fraction of prune.transformer follows prune.schedule to its final value; each round goes from
    the original shape to that round's fractions. The whole plan is checked when prepared, before any work."""

    def __init__(self, model: nn.Module, cfg) -> None:
        super().__init__(model, cfg)
        check_layout(model)
        t = cfg.transformer
        if t.global_heads:
            raise UnprunableError("prune.transformer.global_heads: an hf config describes one head count for every "
                                  "layer, so heads are chosen per layer, the same number in each: set it to false")
        importance.criterion(importance.HF_IMPORTANCES, t.importance)  # an unknown name: refused now

        def steps(final: float) -> list[float]:
            return per_round(cfg.schedule, final, cfg.rounds)

        original, size = shape_of(model), head_size(model)
        # The plan as written is checked; the rounds then cut the hidden width along with the heads (the check
        # passed: both keep the same heads in the end), so a round's rounding cannot split them.
        target_shape(original, size, Fractions(t.depth, t.heads, t.mlp, t.embedding), cfg.round_to)
        self.fractions = [Fractions(d, h, m, e) for d, h, m, e in
                          zip(steps(t.depth), steps(t.heads), steps(t.mlp), steps(t.embedding), strict=True)]
        self.shapes = [target_shape(original, size, dataclasses.replace(f, embedding=f.heads), cfg.round_to)
                       for f in self.fractions]

    def targets(self) -> list[float]:
        """The largest fraction each round reaches (prune.target_sparsity is unused)."""
        return [max(f.depth, f.heads, f.mlp, f.embedding) for f in self.fractions]

    def prune_round(self, model: nn.Module, round_no: int, train: Split, device: torch.device) -> None:
        calibration = train.batch(torch.arange(min(CALIBRATION_IMAGES, len(train))), device)
        t = self.cfg.transformer
        prune_encoder(model, self.shapes[round_no - 1], t.importance, t.depth_metric, calibration)

