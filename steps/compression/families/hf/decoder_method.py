"""prune.method transformer on a causal language model: Minitron's width and depth pruning of a decoder.

The same `prune.transformer` keys as an encoder's: `depth` (whole layers), `heads` (whole key-value groups, each
with its query heads, so num_attention_heads stays a multiple of num_key_value_heads), `mlp` (MLP neurons) and
`embedding` (hidden channels, everywhere the residual stream is read or written), scored by `importance`
(output_norm: Minitron's activations; l1; taylor) on `prune.calibration_samples` training blocks, and depth by
`depth_metric` (block_influence: Minitron's Block Importance, 1 - cos(input, output) of a layer; perplexity: the
loss with the layer removed; last: the naive cut). The slicing and scoring are families/hf/decoder*.py; every round
goes from the shape the last one left to this round's fractions of the original (prune.schedule), and the result
reloads with stock AutoModelForCausalLM.from_pretrained.
"""

from __future__ import annotations

import torch
from torch import nn

from steps.compression.families.hf import decoder
from steps.compression.families.hf.decoder_prune import prune_decoder
from steps.compression.prune_method import PruneMethod, calibration_rows
from steps.compression.rounding import keep
from steps.compression.schedules import per_round
from steps.compression.training import Split

DEPTH_METRICS = {"block_influence": "block_importance", "perplexity": "perplexity", "last": "last"}
"""prune.transformer.depth_metric -> its decoder measure (decoder_importance.DEPTH_METRICS)."""
IMPORTANCES = {"output_norm": "activation", "l1": "l1", "taylor": "taylor"}


class DecoderPruning(PruneMethod):
    """prune.method transformer on an hf causal LM; the whole plan is checked when prepared."""

    def __init__(self, model: nn.Module, cfg) -> None:
        super().__init__(model, cfg)
        t = cfg.transformer
        if t.depth and t.depth_metric not in DEPTH_METRICS:
            raise decoder.UnprunableError(
                f"prune.transformer.depth_metric {t.depth_metric!r} compares a classifier's logits; a language "
                f"model's layers are ranked by {', '.join(DEPTH_METRICS)}")
        if t.global_heads:
            raise decoder.UnprunableError("prune.transformer.global_heads: a from_pretrained config describes one "
                                          "head count for every layer: set it to false")
        decoder.check_layout(model.hf)
        self.original = decoder.shape_of(model.hf)
        final = decoder.target_shape(model.hf, heads=t.heads, mlp=t.mlp, hidden=t.embedding, layers=t.depth,
                                     round_to=cfg.round_to)  # refused now, naming the key, if no config describes it
        if t.heads and final.kv_heads == self.original.kv_heads:
            raise decoder.UnprunableError(
                f"{decoder.HEADS_KEY} {t.heads} removes no whole key-value group of {self.original.kv_heads} (heads go "
                f"by group: each of {self.original.heads // self.original.kv_heads} query heads with its key and "
                f"value); give at least {1 / self.original.kv_heads:.3g}, or 0")
        steps = [per_round(cfg.schedule, final, cfg.rounds) for final in (t.depth, t.heads, t.mlp, t.embedding)]
        self.rounds = list(zip(*steps, strict=True))

    def targets(self) -> list[float]:
        return [max(fractions) for fractions in self.rounds]

    def prune_round(self, model: nn.Module, round_no: int, train: Split, device: torch.device) -> None:
        t = self.cfg.transformer
        depth, heads, mlp, embedding = self.rounds[round_no - 1]
        now = decoder.shape_of(model.hf)
        calibration = train.x["input_ids"][calibration_rows(train, self.cfg.calibration_samples)].to(device)
        prune_decoder(
            model.hf, calibration, layers=_of_now(self.original.layers, now.layers, depth),
            heads=_of_now(self.original.kv_heads, now.kv_heads, heads),
            mlp=_of_now(self.original.intermediate, now.intermediate, mlp),
            hidden=_of_now(self.original.hidden, now.hidden, embedding), importance=IMPORTANCES[t.importance],
            depth_metric=DEPTH_METRICS[t.depth_metric] if t.depth else "last",  # "last": no layer is scored
            batch_size=self.cfg.finetune.batch_size,
            round_to=self.cfg.round_to)


def _of_now(original: int, now: int, fraction_of_original: float) -> float:
    """The fraction of the `now` units to remove so that keep(original, 1 - fraction) remain."""
    wanted = keep(original, 1 - fraction_of_original) if fraction_of_original else original
    return 0.0 if wanted >= now else 1 - wanted / now
