"""params.yaml `distill:`: the student, its teacher and the distillation terms."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from steps.compression import choices
from steps.config.base import Section as _Section
from steps.config.base import choice
from steps.config.models import model_choice
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
    """A transformer distillation term (vit, hf): its weight and which student block learns from which teacher
    block."""

    weight: float = Field(default=0.0, ge=0)
    layer_map: choice(choices.LAYER_MAPS) = Field(
        default="uniform", description="uniform: student block i <- teacher block ceil((i+1) Lt/Ls)-1 (TinyBERT); "
        "last: the last blocks only (MiniLM)")


PRUNED_STUDENT = "pruned"
BLOCK_FAMILIES = ("vit", "hf")
"""The families whose models have transformer blocks with attention maps and hidden states (their
`attention_maps` / `hidden_states` hooks name one module per block)."""


class PrunedStudent(_Section):
    """`distill.student: {name: pruned}`: the prune stage's model itself is the student, distilled from the
    unpruned teacher (`distill.teacher: teacher`): Minitron's prune-then-distill, where the pruned weights,
    not a new model of the pruned shape, keep learning. Its family is the teacher's (teacher.arch)."""

    name: Literal["pruned"]


StudentConfig = model_choice(PrunedStudent)
"""`distill.student`: a model by family name (a new model of that config, trained here), or `pruned`."""


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
    student: StudentConfig = Field(description="a model by family name ({name: cnn, ...}, {name: hf, config: "
                                   "{...}}), or {name: pruned}: the pruned model itself")
    temperature: float = Field(gt=0)
    alpha: float = Field(ge=0, le=1, description="weight of the soft-target term; 0 trains on labels alone")
    hints: FeatureLossConfig = Field(default_factory=FeatureLossConfig, description="FitNets hint losses")
    attention: FeatureLossConfig = Field(default_factory=FeatureLossConfig, description="attention transfer")
    attention_maps: TransformerLossConfig = Field(
        default_factory=TransformerLossConfig, description="MiniLM: KL of attention distributions (vit, hf)")
    hidden_states: TransformerLossConfig = Field(
        default_factory=TransformerLossConfig, description="TinyBERT: MSE of hidden states (vit, hf; pooled "
        "features when the teacher has no blocks), through a learned projection")
    train: TrainConfig

    def unused(self) -> tuple[str, ...]:
        """A term of weight 0 is not computed."""
        return tuple(name for name in ("attention_maps", "hidden_states") if getattr(self, name).weight == 0)

    def implied(self) -> tuple[DistillTerm, ...]:
        """The terms the objective sums: their modules are what the distill stage runs."""
        return tuple(self.terms)

    @property
    def student_is_pruned(self) -> bool:
        """Whether the student is the pruned model itself (`{name: pruned}`), of the teacher's family."""
        return self.student.name == PRUNED_STUDENT

    @model_validator(mode="after")
    def _pruned_student_learns_from_the_teacher(self) -> DistillConfig:
        if self.student_is_pruned and self.teacher == "pruned":
            raise ValueError("distill.student {name: pruned} is the pruned model itself: it cannot teach itself; "
                             "set distill.teacher: teacher (the unpruned model teaches it)")
        return self

    @model_validator(mode="after")
    def _student_is_built_from_something(self) -> DistillConfig:
        if not self.student_is_pruned and self.student.saves_directory and not self.student.sourced:
            raise ValueError("distill.student: an hf student needs exactly one of config ({model_type: bert, ...}) "
                             "and path (a save_pretrained folder)")
        return self

    @model_validator(mode="after")
    def _block_terms(self) -> DistillConfig:
        if not self.student_is_pruned:  # a pruned student is the teacher's family: Params checks it
            self.check_block_terms(self.student.name, "distill.student.name")
        return self

    def check_block_terms(self, family: str, key: str) -> None:
        """attention_maps and hidden_states need a student of a family with transformer blocks; `key` names
        the params key that chose `family`."""
        if family not in BLOCK_FAMILIES and (self.attention_maps.weight > 0 or self.hidden_states.weight > 0):
            raise ValueError(f"distill.attention_maps and distill.hidden_states need a vit or hf student "
                             f"({key} is {family!r})")

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
