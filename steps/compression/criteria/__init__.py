"""Importance criteria: one contract for channel, neuron, head and block scores.

Torch-Pruning's (torch_pruning/pruner/importance.py): a criterion is called on a group, the units that
are removed or kept together, and returns one score per unit, a 1-D tensor, higher = more important. A
group is a DepGraph pruning group (a conv channel with its BatchNorm entry and the next layer's input
slice, an MLP neuron, a head's channels, an embedding channel), or, for depth, the model's sequence of
residual blocks (one score per block). Every criterion is one class on `Importance`, one line in
`steps.compression.choices.CRITERIA`; params keys accept the subsets of it that make sense for them
(`IMPORTANCES`, `TRANSFORMER_IMPORTANCES`, `BLOCK_METRICS`).

A criterion that measures the model on data says so with `needs_calibration`; `check` refuses it,
naming it, when no calibration batch is given, before any work. `prepare` measures what the scores need
(gradients, activations, the model to run blocks in) once; `__call__` then scores any group.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
import torch_pruning as tp
from torch import nn

Calibration = tuple[torch.Tensor, torch.Tensor]
"""A labelled batch (x, y): inputs as the model takes them and class indices."""
NORMALIZERS = (None, "mean")


class Importance(tp.importance.Importance):
    """One criterion: `__call__(group) -> 1-D scores`, higher = keep.

    `normalizer`: None keeps raw scores, so one ranking over groups compares them on one scale (the ViT's
    global heads); "mean" divides each group's scores by their mean, Torch-Pruning's default, so its global
    pruner compares layers of different magnitude (structured channel pruning).
    """

    needs_calibration: ClassVar[bool] = False
    """Whether the scores are measured on data: `prepare` then needs a labelled batch."""

    def __init__(self, name: str, normalizer: str | None = None) -> None:
        if normalizer not in NORMALIZERS:
            raise ValueError(f"importance {name!r}: normalizer must be one of {NORMALIZERS}, got {normalizer!r}")
        self.name = name
        self.normalizer = normalizer

    def check(self, model: nn.Module, calibration: Calibration | None) -> None:
        """Refuse, naming the criterion, what its scores cannot come from; called before any work."""
        if self.needs_calibration and calibration is None:
            raise ValueError(f"importance {self.name!r} is data-driven: pass calibration=(x, y), a labelled batch")

    def prepare(self, model: nn.Module, calibration: Calibration | None) -> Importance:
        """Measure what the scores need on `calibration` (gradients, activations); returns self."""
        return self

    def normalize(self, scores: torch.Tensor) -> torch.Tensor:
        return scores if self.normalizer is None else scores / scores.mean()

    @abstractmethod
    def __call__(self, group) -> torch.Tensor:
        """One score per unit of `group`."""


def criterion(registry, name: str, normalizer: str | None = None) -> Importance:
    """The criterion `name` of `registry` (a view of choices.CRITERIA); an unknown name is refused listing
    the registry's valid ones."""
    return registry.resolve(name)(name, normalizer)


def lowest(scores: torch.Tensor, count: int) -> list[int]:
    """Indices of the `count` lowest scores; ties go to the lower index, so the choice is deterministic."""
    return sorted(torch.argsort(scores, stable=True)[:count].tolist())
