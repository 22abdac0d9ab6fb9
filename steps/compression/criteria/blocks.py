"""Block criteria: how much a residual block matters, one score per block of `model.blocks`.

The group is the model's sequence of pre-norm blocks: a block is a residual update x + f(x), so skipping
one leaves a model that still runs (Men et al. 2024, "ShortGPT: Layers in Large Language Models are More
Redundant Than You Expect"; Muralidharan et al. 2024, Minitron). Scores are measured on the calibration
batch's inputs; call them in eval mode without gradients (transformer_depth.block_importance does).
The blocks may be the ViT's (one argument) or a Hugging Face encoder's layers, which their encoder calls
with the hidden states first and masks after: `Skip` passes the first through and ignores the rest.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn
from torch.nn import functional as F

from steps.compression.criteria import Calibration, Importance
from steps.compression.training import forward, next_token, token_mask


class Skip(nn.Module):
    """A block replaced by the identity on its hidden states, whatever else its caller passes (masks, caches)."""

    def forward(self, hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden


def _hidden(output) -> torch.Tensor:
    """A block's output hidden states: the output itself, or the first of a tuple (older HF layers)."""
    return output[0] if isinstance(output, tuple) else output


class _OnBlocks(Importance):
    needs_calibration = True

    def prepare(self, model: nn.Module, calibration: Calibration | None) -> _OnBlocks:
        self.model, self.x = model, calibration[0]
        return self


class _LogitChange(_OnBlocks):
    """How far the logits move when one block is skipped (replaced by the identity)."""

    @staticmethod
    @abstractmethod
    def distance(full: torch.Tensor, skipped: torch.Tensor) -> torch.Tensor:
        """A scalar: how far `skipped` logits are from the `full` ones."""

    def __call__(self, blocks: nn.Sequential) -> torch.Tensor:
        full = forward(self.model, self.x)
        changes = []
        for i in range(len(blocks)):
            block, blocks[i] = blocks[i], Skip()
            try:
                changes.append(self.distance(full, forward(self.model, self.x)))
            finally:
                blocks[i] = block
        return torch.stack(changes)


class LogitKL(_LogitChange):
    """KL(p_full || p_skipped) of the class distributions, mean over the batch."""

    @staticmethod
    def distance(full: torch.Tensor, skipped: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(skipped, 1), F.log_softmax(full, 1), reduction="batchmean", log_target=True)


class LogitCosine(_LogitChange):
    """1 - cos(logits_full, logits_skipped), mean over the batch."""

    @staticmethod
    def distance(full: torch.Tensor, skipped: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(full, skipped, dim=1)).mean()


class BlockInfluence(_OnBlocks):
    """ShortGPT's Block Influence: 1 - cos(block input, block output) per token, mean over tokens and batch (a
    text's real tokens only).

    One forward pass; it measures how much a block turns the hidden state, not how much the logits care,
    so it is cheaper but less direct.
    """

    def __call__(self, blocks: nn.Sequential) -> torch.Tensor:
        influence: dict[int, torch.Tensor] = {}

        def hook(i: int):
            def record(module, args, output) -> None:
                turned = 1 - F.cosine_similarity(args[0], _hidden(output), dim=-1)  # per token
                influence[i] = turned.mean() if mask is None else (turned * mask).sum() / mask.sum().clamp(min=1)
            return record

        mask = token_mask(self.x)  # a text's real tokens: padding positions are not read
        mask = None if mask is None else mask.to(torch.float32)

        hooks = [b.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]
        try:
            forward(self.model, self.x)
        finally:
            for h in hooks:
                h.remove()
        return torch.stack([influence[i] for i in range(len(blocks))])


class LossOnRemoval(_OnBlocks):
    """The model's loss on the calibration batch with one block skipped (Minitron's "perplexity on removal": for a
    language model the next-token loss, the log of its perplexity; for a classifier the cross-entropy on the
    labels). The block whose removal hurts least goes first."""

    def prepare(self, model: nn.Module, calibration: Calibration | None) -> LossOnRemoval:
        super().prepare(model, calibration)
        self.y = calibration[1]
        return self

    def __call__(self, blocks: nn.Sequential) -> torch.Tensor:
        losses = []
        for i in range(len(blocks)):
            block, blocks[i] = blocks[i], Skip()
            try:
                logits = forward(self.model, self.x)
                losses.append(F.cross_entropy(*next_token(logits, self.y) if logits.dim() == 3 else (logits, self.y)))
            finally:
                blocks[i] = block
        return torch.stack(losses)


class LastBlocks(Importance):
    """The naive depth cut: the last blocks go first (the baseline Minitron and ShortGPT compare against)."""

    needs_calibration = False

    def __call__(self, blocks: nn.Sequential) -> torch.Tensor:
        return torch.arange(len(blocks), 0, -1, dtype=torch.float32)
