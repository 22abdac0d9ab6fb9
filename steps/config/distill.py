"""params.yaml `distill:`: the student, its teacher and the distillation terms."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from steps.compression import choices
from steps.config.base import Section as _Section
from steps.config.base import choice
from steps.config.models import ArchConfig
from steps.config.training import TrainConfig


class LayerPair(_Section):
    student: str = Field(min_length=1)
    teacher: str = Field(min_length=1)


class FeatureLossConfig(_Section):
    """Intermediate-feature matching, layers named as in `model.named_modules()`."""

    layers: list[LayerPair] = Field(default_factory=list)
    weight: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _layers_when_weighted(self) -> FeatureLossConfig:
        if self.weight > 0 and not self.layers:
            raise ValueError("a positive weight needs at least one entry in 'layers'")
        return self


class TransformerLossConfig(_Section):
    """A vit distillation term: its weight and which student block learns from which teacher block."""

    weight: float = Field(default=0.0, ge=0)
    layer_map: choice(choices.LAYER_MAPS) = Field(
        default="uniform", description="uniform: student block i <- teacher block ceil((i+1) Lt/Ls)-1 (TinyBERT); "
        "last: the last blocks only (MiniLM)")


class DistillTerm(_Section):
    """One summand of the distillation objective as these params ask for it. Not a params.yaml section:
    `DistillConfig.terms` maps the keys of `distill:` onto a list of these."""

    name: choice(choices.DISTILL_TERMS)
    source: str = Field(description="the params key the term comes from, named in errors")
    weight: float = Field(ge=0)
    layers: list[LayerPair] = Field(default_factory=list, description="for a term reading named module pairs")
    layer_map: choice(choices.LAYER_MAPS) = Field(
        default="uniform", description="for a term reading per-block activations: how blocks pair")
    options: dict[str, float] = Field(default_factory=dict, description="the term's constructor arguments")


class DistillConfig(_Section):
    teacher: Literal["pruned", "teacher"] = Field(
        default="pruned", description="pruned: prune-then-distill; teacher: distill from the unpruned teacher")
    student: ArchConfig
    temperature: float = Field(gt=0)
    alpha: float = Field(ge=0, le=1, description="weight of the soft-target term; 0 trains on labels alone")
    hints: FeatureLossConfig = Field(default_factory=FeatureLossConfig, description="FitNets hint losses")
    attention: FeatureLossConfig = Field(default_factory=FeatureLossConfig, description="attention transfer")
    attention_maps: TransformerLossConfig = Field(
        default_factory=TransformerLossConfig, description="MiniLM: KL of vit attention distributions")
    hidden_states: TransformerLossConfig = Field(
        default_factory=TransformerLossConfig, description="TinyBERT: MSE of hidden states (pooled features "
        "when the teacher is not a vit), through a learned projection")
    train: TrainConfig

    def unused(self) -> tuple[str, ...]:
        """A term of weight 0 is not computed."""
        return tuple(name for name in ("attention_maps", "hidden_states") if getattr(self, name).weight == 0)

    def implied(self) -> tuple[DistillTerm, ...]:
        """The terms the objective sums: their modules are what the distill stage runs."""
        return tuple(self.terms)

    @model_validator(mode="after")
    def _vit_losses(self) -> DistillConfig:
        if self.student.name != "vit" and (self.attention_maps.weight > 0 or self.hidden_states.weight > 0):
            raise ValueError(f"distill.attention_maps and distill.hidden_states need a vit student "
                             f"(distill.student.name is {self.student.name!r})")
        return self

    @property
    def terms(self) -> list[DistillTerm]:
        """The objective's terms, in summation order: soft targets at `temperature` with weight alpha and
        hard labels with weight 1 - alpha (Hinton et al.'s KD loss), then each feature term weighted > 0."""
        terms = [DistillTerm(name="soft_targets", source="distill.alpha", weight=self.alpha,
                             options={"temperature": self.temperature}),
                 DistillTerm(name="hard_labels", source="distill.alpha", weight=1 - self.alpha)]
        for key, name in (("hints", "hints"), ("attention", "attention_transfer")):
            section = getattr(self, key)
            if section.weight > 0:
                terms.append(DistillTerm(name=name, source=f"distill.{key}", weight=section.weight,
                                         layers=section.layers))
        for key in ("attention_maps", "hidden_states"):
            section = getattr(self, key)
            if section.weight > 0:
                terms.append(DistillTerm(name=key, source=f"distill.{key}", weight=section.weight,
                                         layer_map=section.layer_map))
        return terms
