"""params.yaml's model sections: `teacher.arch` and `distill.student` (a model by family name), the
teacher's training and where a trained teacher comes from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Union, get_args

from pydantic import ConfigDict, Field, ValidationError, WrapValidator, field_validator, model_validator

from steps.compression import choices
from steps.compression.families.cnn.config import CNNConfig
from steps.compression.families.custom.config import CustomConfig
from steps.compression.families.hf.config import HFConfig
from steps.compression.families.mlp.config import MLPConfig
from steps.compression.families.resnet.config import ResNetConfig
from steps.compression.families.vit.config import ViTConfig
from steps.config.base import RegistryChoice
from steps.config.base import Section as _Section
from steps.config.training import TrainConfig

FAMILY_CONFIGS = (MLPConfig, CNNConfig, ResNetConfig, ViTConfig, CustomConfig, HFConfig)
"""One config class per model family, each validating its own fields (steps/compression/families/<name>/config.py)."""


def _as_one_section(names: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    """Errors worded as for any other section: pydantic puts the tag into a tagged union's error locations
    (`teacher.arch.vit.pool`), which is no key of params.yaml; and an unknown name reads as the bad value
    of `name`, listing the valid ones (`names`)."""

    def validate_section(raw: Any, validate) -> Any:
        try:
            return validate(raw)
        except ValidationError as err:
            tag = raw.get("name") if isinstance(raw, dict) else None
            errors = [_untagged(e, tag, names) for e in err.errors()]
            raise ValidationError.from_exception_data(err.title, errors) from None

    return validate_section


def _untagged(error: dict, tag: Any, names: tuple[str, ...]) -> dict:
    if error["type"] == "union_tag_not_found":
        return {"type": "missing", "loc": ("name",), "input": error["input"]}
    if error["type"] == "union_tag_invalid":
        expected = " or ".join(", ".join(repr(n) for n in names).rsplit(", ", 1))
        return {"type": "literal_error", "loc": ("name",), "input": tag, "ctx": {"expected": expected}}
    loc = error["loc"][1:] if error["loc"][:1] == (tag,) else error["loc"]
    return {**{k: error[k] for k in ("type", "input", "ctx") if k in error}, "loc": loc}


def model_choice(*others: type) -> Any:
    """A model by name: the tagged union on `name` of the families' configs and of `others` (sections with a
    `name: Literal[...]` of their own, e.g. distill.student's `pruned`); its RegistryChoice says a family's
    `name` selects an entry of `choices.FAMILIES` (another name selects no code)."""
    members = (*FAMILY_CONFIGS, *others)
    names = (*choices.FAMILIES, *(name for other in others for name in get_args(other.model_fields["name"].annotation)))
    return Annotated[Union[members], Field(discriminator="name"),  # noqa: UP007 (a tuple of classes)
                     RegistryChoice(choices.FAMILIES), WrapValidator(_as_one_section(names))]


ArchConfig = model_choice()
"""A model by family name (`teacher.arch`, a `distill.student`): the tagged union of the families' configs."""


class TeacherTrainConfig(TrainConfig):
    epochs: int = Field(ge=0, description="0 keeps teacher.init as it is (only with init)")


class TeacherInit(_Section):
    """A trained model to start from: a registered version or a safetensors checkpoint (its .json beside it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)  # "from" is a keyword
    source: str = Field(alias="from", min_length=1,
                        description='"models:/NAME@alias", "models:/NAME/VERSION" or a path to a .safetensors file')

    @field_validator("source")
    @classmethod
    def _known_form(cls, value: str) -> str:
        # A models:/ URI is parsed where it is resolved (tracking.ModelRef, the one parser of them).
        if not value.startswith("models:/") and not value.endswith(".safetensors"):
            raise ValueError(f"teacher.init.from must be a models:/ URI or a .safetensors path, got {value!r}")
        return value


class TeacherConfig(_Section):
    arch: ArchConfig
    train: TeacherTrainConfig
    init: TeacherInit | None = Field(default=None, description="start from this trained model instead of scratch")

    @model_validator(mode="after")
    def _zero_epochs_need_init(self) -> TeacherConfig:
        if self.train.epochs == 0 and self.init is None:
            raise ValueError("teacher.train.epochs: 0 needs teacher.init (a trained model to keep as it is)")
        if self.arch.saves_directory:  # hf: where the model comes from is arch.config, arch.path or init
            _one_hf_source(self.arch, self.init)
        return self


def _one_hf_source(arch, init: TeacherInit | None) -> None:
    if init is None and not arch.sourced:
        raise ValueError("teacher.arch: an hf arch needs exactly one of config ({model_type: bert, hidden_size: ..., ...}) "
                         "and path (a save_pretrained folder), or teacher.init (a registered hf model)")
    if init is not None and arch.sourced:
        raise ValueError("teacher.init names the model to start from, and so does teacher.arch."
                         f"{'path' if arch.path else 'config'}: keep one (teacher.arch: {{name: hf}} with init)")
    if init is not None and not init.source.startswith("models:/"):
        raise ValueError(f"teacher.init.from {init.source!r}: an hf teacher starts from a registered version "
                         "(models:/NAME@alias) or from a save_pretrained folder named by teacher.arch.path")
