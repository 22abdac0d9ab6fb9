"""params.yaml `prune:`: the method, its criterion and schedule, and the fine-tuning after each round."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from steps.compression import choices
from steps.config.base import Section as _Section
from steps.config.base import choice
from steps.config.training import TrainConfig


class TransformerPruneConfig(_Section):
    """prune.method transformer (a vit or hf teacher): final fractions removed, reached over the rounds by the
    schedule. On an hf teacher heads and embedding are one axis (its config ties hidden_size to heads x head
    size: give both the same fraction) and global_heads is refused (one head count for every layer)."""

    heads: float = Field(default=0.0, ge=0, lt=1, description="fraction of attention heads (per block, or global)")
    mlp: float = Field(default=0.0, ge=0, lt=1, description="fraction of every block's MLP hidden width")
    embedding: float = Field(default=0.0, ge=0, lt=1, description="fraction of the residual (embedding) width")
    depth: float = Field(default=0.0, ge=0, lt=1, description="fraction of whole blocks, least important first")
    importance: choice(choices.TRANSFORMER_IMPORTANCES) = Field(
        default="l1", description="head / neuron / channel ranking")
    global_heads: bool = Field(default=False, description="rank heads over all blocks (blocks end up different)")
    depth_metric: choice(choices.BLOCK_METRICS) = Field(
        default="logit_kl", description="how a block's importance is measured when it is skipped")


class PruneConfig(_Section):
    method: choice(choices.PRUNE_METHODS) = Field(
        default="magnitude", description="magnitude: zero single weights; structured: remove whole channels/neurons; "
        "transformer: remove heads, MLP width, embedding width and blocks of a vit or hf model (prune.transformer)")
    scope: Literal["global", "layer"] = Field(default="global", description="one ranking for all layers, or per layer")
    importance: choice(choices.IMPORTANCES) = Field(
        default="l1", description="channel ranking for structured pruning")
    schedule: choice(choices.SCHEDULES) = "cubic"
    target_sparsity: float = Field(gt=0, lt=1, description="fraction of weights (magnitude) or channels (structured)")
    rounds: int = Field(ge=1)
    round_to: int = Field(default=1, ge=1, description="structured: channel counts kept as multiples of this")
    finetune: TrainConfig
    transformer: TransformerPruneConfig = Field(default_factory=TransformerPruneConfig)

    @model_validator(mode="after")
    def _transformer_amounts(self) -> PruneConfig:
        t = self.transformer
        if self.method == "transformer" and not any((t.heads, t.mlp, t.embedding, t.depth)):
            raise ValueError("prune.method transformer needs a fraction > 0 in prune.transformer "
                             "(heads, mlp, embedding or depth)")
        return self
