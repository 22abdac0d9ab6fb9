"""Depth pruning of the ViT (vit.py): remove whole blocks, the least important on a calibration batch.

Hand-written rather than DepGraph's: a pre-norm block is a residual update x + f(x), so deleting it leaves
a model that still runs, and no channel coupling exists to resolve. Blocks are scored by a block criterion
(choices.BLOCK_METRICS: how much the output changes when one is skipped, Men et al. 2024, ShortGPT;
Muralidharan et al. 2024, Minitron) and the least important are removed in one shot.
"""

from __future__ import annotations

import torch
from torch import nn

from steps.compression import choices
from steps.compression.criteria import Calibration, criterion, lowest
from steps.compression.rounding import keep
from steps.compression.training import evaluating
from steps.compression.families.vit.model import ViT


def block_importance(model: ViT, calibration: Calibration | None, metric: str = "logit_kl") -> torch.Tensor:
    """Importance of each block on the calibration batch (eval mode, no gradients): one float per block."""
    scores = criterion(choices.BLOCK_METRICS, metric)
    if not isinstance(model, ViT):
        raise TypeError(f"depth pruning needs a vit.ViT, got {type(model).__name__}")
    scores.check(model, calibration)
    with evaluating(model):
        return scores.prepare(model, calibration)(model.blocks).float().cpu().clone()


def prune_depth(model: ViT, amount: float, calibration: Calibration | None, metric: str = "logit_kl") -> ViT:
    """Remove round(L * amount) of the L blocks (at least one stays), the least important on `calibration`.

    One shot: every block is scored on the unpruned model, as ShortGPT does. The kept blocks keep their
    order and are renumbered (blocks.0 ...), so a checkpoint's keys are those of a plain shallower ViT.
    Returns `model`.
    """
    if not 0 <= amount < 1:
        raise ValueError(f"depth pruning amount must be in [0, 1), got {amount}")
    scores = block_importance(model, calibration, metric)
    drop = set(lowest(scores, len(scores) - keep(len(scores), 1 - amount)))
    if drop:
        model.blocks = nn.Sequential(*(b for i, b in enumerate(model.blocks) if i not in drop))
    return model
