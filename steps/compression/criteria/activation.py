"""Activation importance: how much signal a unit carries on calibration data."""

from __future__ import annotations

import torch
from torch import nn

from steps.compression.criteria import Calibration, Importance
from steps.compression.training import evaluating, forward


def forward_with_hooks(model: nn.Module, x, hooks: list) -> None:
    """One eval-mode forward pass of `x` with `hooks` (handles) recording activations; removed afterwards, even
    when the pass fails."""
    try:
        with evaluating(model):
            forward(model, x)
    finally:
        for hook in hooks:
            hook.remove()


def channel_mean_square(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of x^2 per channel (the last dimension) over every other position: a channel's activation energy.
    With a text's token `mask` (B, N) and token activations x (B, N, C), over the real tokens only: padding
    is not what the model reads, and short texts would otherwise be mostly padding."""
    x = x.detach()
    if mask is not None and x.dim() == 3 and x.shape[:2] == mask.shape:
        weights = mask.to(x.dtype).unsqueeze(-1)
        return (x.pow(2) * weights).sum((0, 1)) / weights.sum().clamp(min=1)
    return x.pow(2).reshape(-1, x.shape[-1]).mean(0)


class OutputNorm(Importance):
    """Mean square, over a calibration batch and all tokens, of what each unit outputs (the activation
    criterion of Minitron, Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge
    Distillation").

    For a head that is its attention output (the input of `proj`), for an MLP neuron its GELU activation
    (the input of `fc2`), for an embedding channel the residual stream entering the final LayerNorm: the
    input channels of the group's root layer. A head's score (the mean over its channels) is its output's
    squared norm divided by head_dim.
    """

    needs_calibration = True

    def prepare(self, model: nn.Module, calibration: Calibration | None) -> OutputNorm:
        self.stats: dict[nn.Module, torch.Tensor] = {}

        def record(module: nn.Module, args) -> None:
            self.stats[module] = channel_mean_square(args[0])

        layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.LayerNorm)]
        hooks = [m.register_forward_pre_hook(record) for m in layers]
        forward_with_hooks(model, calibration[0], hooks)
        return self

    def __call__(self, group) -> torch.Tensor:
        root = group[0]
        return self.normalize(self.stats[root.dep.target.module][root.idxs].clone())
