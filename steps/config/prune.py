"""params.yaml `prune:`: the method, its criterion and schedule, and the fine-tuning after each round."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from steps.compression import choices
from steps.config.base import Section as _Section
from steps.config.base import choice
from steps.config.training import TrainConfig


N_M_METHODS = ("wanda", "magnitude")
"""The methods that prune a language model n:m (steps/compression/families/hf/sparse_method.py)."""


class FinetuneConfig(TrainConfig):
    """prune.finetune: the training after each round; epochs 0 trains none (Minitron distills the pruned model
    instead of fine-tuning it: distill.student {name: pruned})."""

    epochs: int = Field(ge=0, description="0: no fine-tuning after a round")


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
    finetune: FinetuneConfig
    transformer: TransformerPruneConfig = Field(default_factory=TransformerPruneConfig)
    n_m: str | None = Field(default=None, pattern=r"^[0-9]+:[0-9]+$",
                            description="wanda or magnitude on a language model: keep n of every m consecutive "
                            "weights of each row (\"2:4\", semi-structured) instead of target_sparsity")
    calibration_samples: int = Field(default=256, ge=1, description="a language model's training blocks, drawn at "
                                     "random, that its pruning measures activations, gradients and layers on")

    @model_validator(mode="after")
    def _transformer_amounts(self) -> PruneConfig:
        t = self.transformer
        if self.method == "transformer" and not any((t.heads, t.mlp, t.embedding, t.depth)):
            raise ValueError("prune.method transformer needs a fraction > 0 in prune.transformer "
                             "(heads, mlp, embedding or depth)")
        if self.n_m is not None:
            n, m = (int(v) for v in self.n_m.split(":"))
            if not 0 < n < m:
                raise ValueError(f"prune.n_m {self.n_m!r}: keep n of every m with 0 < n < m (2:4, say)")
            if self.method not in N_M_METHODS:
                raise ValueError(f"prune.n_m is for prune.method {' or '.join(N_M_METHODS)} on a language model, "
                                 f"not {self.method!r}: remove it")
        return self

    @property
    def pattern(self) -> tuple[int, int] | None:
        """prune.n_m as (n, m), or None for unstructured sparsity at target_sparsity."""
        return None if self.n_m is None else tuple(int(v) for v in self.n_m.split(":"))
