"""Importance of an hf encoder's heads, FFN neurons, hidden channels and layers, for hf/method.py.

The criteria contract of steps/compression/criteria (`check`, `prepare(model, calibration)`, then
`__call__(group) -> one score per unit`, higher = keep) on the hand-listed groups of hf/pruning.py rather
than DepGraph's: one class per name of `prune.transformer.importance` (choices.TRANSFORMER_IMPORTANCES,
whose names the schema accepts), in `HF_IMPORTANCES`. Layers are scored by the block criteria themselves
(choices.BLOCK_METRICS: the logit change when a layer is skipped, or Block Influence), on the encoder's layers.
"""

from __future__ import annotations

import torch
from torch import nn

from steps.compression import choices
from steps.compression.choices import Registry
from steps.compression.criteria import Calibration, Importance, criterion
from steps.compression.criteria.activation import channel_mean_square, forward_with_hooks
from steps.compression.criteria.taylor import loss_gradients
from steps.compression.families.hf.pruning import Group, layers, unit_sums
from steps.compression.training import evaluating, token_mask


class L1(Importance):
    """sum |w| over the unit's slices of every layer it spans (a head: its query, key and value rows and
    output columns; Li et al. 2017, "Pruning Filters for Efficient ConvNets")."""

    def __call__(self, group: Group) -> torch.Tensor:
        return self.normalize(unit_sums(group, lambda cut: getattr(cut.module, cut.name).abs()))


class Taylor(Importance):
    """sum |w * dL/dw| over the unit's slices, cross-entropy on the calibration batch (Molchanov et al. 2019,
    "Importance Estimation for Neural Network Pruning")."""

    needs_calibration = True

    def prepare(self, model: nn.Module, calibration: Calibration | None) -> Taylor:
        loss_gradients(model, calibration)
        return self

    def __call__(self, group: Group) -> torch.Tensor:
        def taylor(cut) -> torch.Tensor:
            weight = getattr(cut.module, cut.name)
            return torch.zeros_like(weight) if weight.grad is None else (weight * weight.grad).abs()

        return self.normalize(unit_sums(group, taylor))


class OutputNorm(Importance):
    """Minitron's activation importance (Muralidharan et al. 2024, "Compact Language Models via Pruning and
    Knowledge Distillation"): the mean square, over the calibration batch and its tokens, of each unit's
    activation. A head: its attention output (the input of attention.output.dense), averaged over its
    channels; an FFN neuron: its GELU output (the input of output.dense); a hidden channel: the output of
    every LayerNorm, summed over them. Over the real tokens only (the attention mask): padding is not read."""

    needs_calibration = True

    def prepare(self, model: nn.Module, calibration: Calibration | None) -> OutputNorm:
        self.stats: dict[tuple[int, str], torch.Tensor] = {}

        mask = token_mask(calibration[0])

        def on_input(module: nn.Module, args) -> None:
            self.stats[(id(module), "input")] = channel_mean_square(args[0].float(), mask).cpu()

        def on_output(module: nn.Module, args, output) -> None:
            self.stats[(id(module), "output")] = channel_mean_square(output.float(), mask).cpu()

        hooks = [m.register_forward_pre_hook(on_input) for m in model.modules() if isinstance(m, nn.Linear)]
        hooks += [m.register_forward_hook(on_output) for m in model.modules() if isinstance(m, nn.LayerNorm)]
        forward_with_hooks(model, calibration[0], hooks)
        return self

    def __call__(self, group: Group) -> torch.Tensor:
        total = torch.zeros(group.units)
        for module, side in group.probes:
            total += self.stats[(id(module), side)].reshape(group.units, group.size).mean(1)
        return self.normalize(total)


HF_IMPORTANCES = Registry("prune.transformer.importance (hf)", {
    # the names of choices.TRANSFORMER_IMPORTANCES, on hf/pruning.py's groups
    "l1": "steps.compression.families.hf.importance:L1",
    "taylor": "steps.compression.families.hf.importance:Taylor",
    "output_norm": "steps.compression.families.hf.importance:OutputNorm",
})


def scores(model: nn.Module, importance: str, groups: list[Group],
           calibration: Calibration | None) -> list[torch.Tensor]:
    """One score tensor per group, from criterion `importance` prepared once; calibration gradients cleared."""
    scorer = criterion(HF_IMPORTANCES, importance)
    scorer.check(model, calibration)
    try:
        scorer.prepare(model, calibration)
        return [scorer(group) for group in groups]
    finally:
        model.zero_grad(set_to_none=True)  # calibration gradients are not training gradients


def layer_scores(model: nn.Module, metric: str, calibration: Calibration | None) -> torch.Tensor:
    """One score per encoder layer by block criterion `metric` (eval mode, no gradients)."""
    scorer = criterion(choices.BLOCK_METRICS, metric)
    scorer.check(model, calibration)
    with evaluating(model):
        return scorer.prepare(model, calibration)(layers(model)).float().cpu().clone()
