"""Structured pruning: physically remove whole channels and neurons.

Unstructured pruning (pruning.py) leaves zeros that dense kernels still
multiply; removing a channel makes every tensor that touches it smaller, so
parameters, MACs and latency all drop. Removing conv channel c must also
remove BN entry c, input channel c of the next conv (or the c-th block of
the flattened features in the next Linear), and, in a ResNet, channel c of
every layer summed into the same residual stream. torch-pruning's DepGraph
(Fang et al. 2023, "DepGraph: Towards Any Structural Pruning") traces the
model once and groups those coupled slices, so a group is scored and removed
as one, by one criterion of steps/compression/criteria (`prune.importance`).

The output layer is never pruned: the number of classes must stay.
Pruned layers get new Parameter objects: build the optimizer after pruning.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from steps.compression import choices
from steps.compression.criteria import Calibration, Importance, criterion
from steps.compression.families.custom.model import refuse_unprunable
from steps.compression.prune_method import CALIBRATION_IMAGES, PruneMethod
from steps.compression.rounding import keep
from steps.compression.training import Split

ROOTS = (nn.Conv2d, nn.Linear)
"""Layers whose output channels start a pruning group."""


def output_layer(model: nn.Module) -> nn.Module:
    """The last Conv2d/Linear: its outputs are the class logits."""
    roots = [m for m in model.modules() if isinstance(m, ROOTS)]
    if not roots:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to prune")
    return roots[-1]


def _ratio_keeping(channels: int, keep: int) -> float:
    """A ratio for which torch-pruning keeps `keep` of a layer's `channels` (0 when it keeps them all).

    torch-pruning keeps int(n * (1 - ratio)): a floor, so float noise
    (10 * (1 - 0.9) = 0.999...) could empty a layer, and an emptied group is
    silently skipped. The +0.5 puts the product mid-way between integers.
    """
    return max(0.0, 1 - (keep + 0.5) / channels)


def layer_widths(model: nn.Module) -> dict[nn.Module, int]:
    """{layer: output channels} of every prunable layer (all Conv2d/Linear but the output layer)."""
    head = output_layer(model)
    return {m: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            for m in model.modules() if isinstance(m, ROOTS) and m is not head}


def target_widths(original: dict[nn.Module, int], sparsity: float, round_to: int = 1) -> dict[nn.Module, int]:
    """Each layer keeps (1 - sparsity) of its original channels, rounded by rounding.keep (down to a multiple
    of `round_to`, at least `round_to`).

    Computed from the original widths every round, so rounding does not compound over rounds.
    """
    if not 0 <= sparsity < 1 or round_to < 1:
        raise ValueError(f"need 0 <= sparsity < 1 and round_to >= 1, got {sparsity}, {round_to}")
    return {m: keep(n, 1 - sparsity, round_to) for m, n in original.items()}


def _per_layer_ratios(model: nn.Module, amount: float) -> dict[nn.Module, float]:
    """Each layer keeps round(n * (1 - amount)) of its n channels, at least one."""
    return {m: _ratio_keeping(n, keep(n, 1 - amount)) for m, n in layer_widths(model).items()}


def _criterion(model: nn.Module, amount: float, importance: str, calibration: Calibration | None) -> Importance:
    """The criterion, every setting checked before any work."""
    if not 0 <= amount < 1:
        raise ValueError(f"channel pruning amount must be in [0, 1), got {amount}")
    # Torch-Pruning's per-group mean normalisation: its global ranking compares layers of different scale.
    scores = criterion(choices.IMPORTANCES, importance, normalizer="mean")
    refuse_unprunable(model)  # a layer torch-pruning cannot shrink (or a checkpoint rebuild) fails by name
    scores.check(model, calibration)
    return scores


def prune_channels(
    model: nn.Module,
    example_inputs: torch.Tensor,
    amount: float,
    importance: str,
    calibration: Calibration | None = None,
    global_pruning: bool = False,
    widths: dict[nn.Module, int] | None = None,
    round_to: int | None = None,
) -> nn.Module:
    """Remove `amount` of the current channels of every prunable layer, in place; returns `model`.

    Local (default): each layer keeps round(n * (1 - amount)) of its n channels
    (at least one), coupled layers sharing one decision. Global: one ranking
    over all groups (torch-pruning normalises each group's scores by their
    mean), so layers lose different fractions; torch-pruning keeps
    int(N * (1 - amount)) of the N channels in all, except that a layer whose
    every channel falls below the threshold is left whole (it skips a group
    it would empty), so fewer may go.
    Each call traces the model afresh, so repeated calls prune relative to the
    current widths (see channel_keep_amounts).
    `widths` ({layer: channels to keep}, local pruning only) replaces `amount`
    per layer, e.g. widths from target_widths, which are rounded to SIMD-friendly
    multiples; `round_to` is torch-pruning's own rounding, for global pruning.
    """
    scores = _criterion(model, amount, importance, calibration)
    if amount == 0:
        return model
    scores.prepare(model, calibration)
    head = output_layer(model)
    if widths is not None:
        # Every layer gets its ratio (0 keeps it whole): a layer missing from the dict would get `amount`.
        ratios = {m: _ratio_keeping(n, widths[m]) for m, n in layer_widths(model).items()}
    else:
        ratios = None if global_pruning else _per_layer_ratios(model, amount)
    pruner = tp.pruner.BasePruner(
        model,
        example_inputs,
        importance=scores,
        global_pruning=global_pruning,
        pruning_ratio=amount,
        pruning_ratio_dict=ratios,
        ignored_layers=[head],
        round_to=round_to if global_pruning else None,
        root_module_types=list(ROOTS),
    )
    pruner.step()
    model.zero_grad(set_to_none=True)  # calibration gradients (Taylor) are not training gradients
    return model


def channel_keep_amounts(schedule: list[float]) -> list[float]:
    """Cumulative removed fractions s_t -> the amount to remove from the current model each round.

    After round t-1 a fraction (1 - s_{t-1}) of the channels remains; keeping
    (1 - s_t) of the original means removing a_t = 1 - (1 - s_t) / (1 - s_{t-1}).
    """
    amounts, previous = [], 0.0
    for s in schedule:
        if not previous <= s < 1:
            raise ValueError(f"schedule must be non-decreasing in [0, 1), got {schedule}")
        amounts.append(1 - (1 - s) / (1 - previous))
        previous = s
    return amounts


class StructuredPruning(PruneMethod):
    """prune.method structured: remove whole channels and neurons (prune.importance ranks them; prune.scope
    global ranks all groups at once, layer cuts each layer to its rounded width)."""

    def __init__(self, model: nn.Module, cfg) -> None:
        super().__init__(model, cfg)
        self.original_widths = layer_widths(model)

    def prune_round(self, model: nn.Module, round_no: int, train: Split, device: torch.device) -> None:
        targets, cfg = self.targets(), self.cfg
        target, previous = targets[round_no - 1], targets[round_no - 2] if round_no > 1 else 0.0
        amount = channel_keep_amounts([previous, target])[-1]
        if amount <= 0:  # e.g. one-shot: later rounds only fine-tune
            return
        calibration = (train.x[:CALIBRATION_IMAGES], train.y[:CALIBRATION_IMAGES])
        # Per layer: widths from the original ones, so `round_to` rounding does not compound over rounds.
        widths = None if cfg.scope == "global" else target_widths(self.original_widths, target, cfg.round_to)
        prune_channels(model, train.x[:2], amount, cfg.importance, calibration=calibration,
                       global_pruning=cfg.scope == "global", widths=widths, round_to=cfg.round_to)
