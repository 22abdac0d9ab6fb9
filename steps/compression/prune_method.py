"""The contract of a `prune.method` (one class per method, one line each in choices.PRUNE_METHODS).

The prune stage owns the loop (prune a round, fine-tune, evaluate; as Torch-Pruning leaves fine-tuning to
its caller); a method only says what each round removes and how much of the teacher is gone:

    method = PRUNE_METHODS.resolve(name)(model, cfg)   # prepare: what the targets are measured from
    for round_no, target in enumerate(method.targets(), start=1):
        method.prune_round(model, round_no, train, device)
        ... fine-tune, evaluate, record method.sparsity(model) ...
    method.finish(model)                               # permanent before saving

`cfg` is params.yaml's `prune:` section (steps.config.PruneConfig), read by attribute: the library does not
import the config (steps/config is its caller's layer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from steps.compression import measure
from steps.compression.schedules import get_schedule
from steps.compression.training import Split

CALIBRATION_IMAGES = 256
"""Training images a data-driven criterion (Taylor, activations, block metrics) measures the model on."""


def calibration_rows(train: Split, count: int) -> torch.Tensor:
    """`count` training rows drawn at random (a fixed seed, in their order): the splits list samples in sorted
    order (a language model's documents by path), so the first rows would be one slice of the data (one genre)."""
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:count]
    return chosen.sort().values


class PruneMethod(ABC):
    def __init__(self, model: nn.Module, cfg) -> None:
        """Prepare: remember what the targets are fractions of (the teacher as it is now)."""
        self.cfg = cfg
        self.original_parameters = measure.parameters(model)

    def targets(self) -> list[float]:
        """The cumulative fraction removed after each round: prune.schedule to prune.target_sparsity."""
        return get_schedule(self.cfg.schedule)(self.cfg.target_sparsity, self.cfg.rounds)

    @abstractmethod
    def prune_round(self, model: nn.Module, round_no: int, train: Split, device: torch.device) -> None:
        """Take `model`, in place, to round `round_no`'s target (1-based); `train` holds calibration data."""

    def sparsity(self, model: nn.Module) -> float:
        """The fraction of the teacher's weights that no longer exist."""
        return 1 - measure.parameters(model) / self.original_parameters

    def finish(self, model: nn.Module) -> None:
        """Make what the rounds did permanent before the model is saved (nothing to do for most methods)."""
