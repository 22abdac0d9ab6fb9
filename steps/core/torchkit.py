"""What the torch stages share: seeding and device, the training loss, loading and saving models by role."""

from __future__ import annotations

from pathlib import Path

import torch

from steps import config
from steps.compression import augment, checkpoint
from steps.compression.models import ModelSpec
from steps.compression.training import resolve_device, seed_everything
from steps.core.layout import model_path, spec_path
from steps.core.names import ModelRole


def setup(params: config.Params) -> tuple[torch.device, torch.Generator]:
    """Seed, threads and device from params; a generator for batch order."""
    seed_everything(params.seed, params.threads)
    return resolve_device(params.device), torch.Generator().manual_seed(params.seed)


def regularised_loss(split, device: torch.device, train: config.TrainConfig, seed: int):
    """Cross-entropy on `split` (augmented if `train.augment`), plus the L1 sparsity penalty when its
    coefficient is positive."""
    from steps.compression.regularization import l1_penalty
    from steps.compression.training import cross_entropy_loss

    base = cross_entropy_loss(split, device, augment.for_training(train.augment, seed))
    l1 = train.l1
    if l1.coefficient == 0:
        return base
    return lambda m, idx: base(m, idx) + l1_penalty(m, l1.coefficient, l1.target)


def spec_from(arch: config.ArchConfig) -> ModelSpec:
    return ModelSpec(**arch.model_dump())


def load_model(root: Path, role: ModelRole, device: torch.device | None = None):
    model, spec = checkpoint.load(root / model_path(role), root / spec_path(role))
    return (model.to(device) if device is not None else model), spec


def save_model(root: Path, role: ModelRole, model, spec: ModelSpec, meta: dict) -> None:
    checkpoint.save(model.cpu(), spec, root / model_path(role), root / spec_path(role), meta)
