"""A training recipe (teacher, fine-tuning rounds, distillation): epochs, optimiser, schedule, L1."""

from __future__ import annotations

from pydantic import Field

from steps.compression import choices
from steps.config.base import Section as _Section
from steps.config.base import choice


class L1Config(_Section):
    """L1 sparsity regularisation while training: on weights, or on BN scales (network slimming)."""

    coefficient: float = Field(default=0.0, ge=0)
    target: choice(choices.L1_TARGETS) = "weights"


class TrainConfig(_Section):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: choice(choices.LR_SCHEDULES) = "constant"
    augment: bool = Field(default=False, description="random 2-px shifts and horizontal flips")
    l1: L1Config = Field(default_factory=L1Config)
