"""prune.method wanda | magnitude on a causal language model: single weights of the decoder's Linears.

Wanda scores a weight by |W| x the L2 norm of its input over `prune.calibration_samples` training blocks,
magnitude by |W|; both remove the lowest scores of each output row (steps/compression/sparsity.py), to each
round's fraction of prune.schedule, or `prune.n_m` ("2:4": n kept of every m consecutive weights of a row,
the pattern sparse tensor cores run). The masks stay on the weights through the fine-tuning after each round
(torch.nn.utils.prune: a pruned weight stays zero) and are folded in before saving, so the checkpoint is a plain
save_pretrained folder, as large as the dense one: zeros stored dense cost as much as any weight, and CPU
matrix products still multiply them. `report` says what a sparse format would save.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from steps.compression import pruning, sparsity
from steps.compression.prune_method import PruneMethod, calibration_rows
from steps.compression.training import Split


class UnstructuredDecoderError(ValueError):
    """A sparsity method asked of a model it cannot prune (not a causal language model); names the key."""


class DecoderSparsity(PruneMethod):
    """prune.method wanda or magnitude on an hf causal LM (the hf family's own, by Family.prune_method_classes)."""

    def __init__(self, model: nn.Module, cfg) -> None:
        super().__init__(model, cfg)
        if getattr(model, "task", None) != "causal_lm":
            raise UnstructuredDecoderError(
                f"prune.method {cfg.method} prunes a causal language model's decoder (data.task causal_lm); an hf "
                "classifier is pruned with prune.method transformer")
        self.layers = sparsity.linears(model.hf, sparsity.DECODER_LAYERS)  # refused now when there are none
        self.pattern = cfg.pattern
        if self.pattern is not None:
            for name, module in self.layers.items():
                sparsity.check_groups(self.pattern, module.in_features, name)
        self.dense = sum(m.weight.numel() for m in self.layers.values())

    def targets(self) -> list[float]:
        """prune.schedule to prune.target_sparsity; with prune.n_m, its fraction (1 - n/m) in every round."""
        if self.pattern is None:
            return super().targets()
        n, m = self.pattern
        return [1 - n / m] * self.cfg.rounds

    def prune_round(self, model: nn.Module, round_no: int, train: Split, device: torch.device) -> None:
        calibration = train.x["input_ids"][calibration_rows(train, self.cfg.calibration_samples)].to(device)
        fraction = None if self.pattern is not None else self.targets()[round_no - 1]
        kept = sparsity.decoder_masks(model.hf, self.cfg.method, fraction, self.pattern, calibration,
                                      self.cfg.finetune.batch_size)
        for name, keep in kept.items():
            module = self.layers[name]
            if prune.is_pruned(module):
                prune.remove(module, "weight")  # the new mask is computed from the weights as they are now
            prune.custom_from_mask(module, "weight", keep.to(module.weight.device))

    def sparsity(self, model: nn.Module) -> float:
        """The fraction of the decoder Linears' weights that are zero."""
        with torch.no_grad():
            return 1 - sum(int(torch.count_nonzero(m.weight)) for m in self.layers.values()) / self.dense

    def finish(self, model: nn.Module) -> None:
        pruning.fold(model)

    def report(self, model: nn.Module) -> dict:
        """Non-zeros and the compressed size a sparse format would take, per layer and in total."""
        return sparsity.report(model.hf, self.cfg.method, None if self.pattern else self.cfg.target_sparsity,
                               self.pattern)
