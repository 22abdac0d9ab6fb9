"""params.yaml's model sections: `teacher.arch` and `distill.student` (an architecture by family name),
the teacher's training and where a trained teacher comes from."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from steps.compression import choices
from steps.config.base import Section as _Section
from steps.config.base import choice
from steps.config.training import TrainConfig

_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")

class ArchConfig(_Section):
    """A model architecture by registry name (see steps.compression.models)."""

    name: choice(choices.ARCHITECTURES)
    channels: list[int] = Field(default_factory=list, description="conv widths (cnn only)")
    hidden: list[int] = Field(default_factory=list, description="hidden widths of the classifier")
    batch_norm: bool = True
    # vit only (steps/compression/vit.py); the names are ModelSpec's, so spec_from passes them through
    patch_size: int = Field(default=7, ge=1, description="vit: patch side in pixels; must divide the image size")
    embed_dim: int = Field(default=64, ge=1, description="vit: residual width")
    depth: int = Field(default=4, ge=1, description="vit: transformer blocks")
    heads: int = Field(default=4, ge=1, description="vit: attention heads per block; must divide embed_dim")
    mlp_ratio: float = Field(default=2.0, gt=0, description="vit: MLP hidden width / embed_dim")
    pool: Literal["cls", "mean"] = Field(default="cls", description="vit: class token or mean over tokens")
    # custom only (steps/compression/custom.py): the user's own model, built by factory(**kwargs)
    factory: str | None = Field(default=None, description='custom: "package.module:function" returning an nn.Module')
    kwargs: dict[str, Any] = Field(default_factory=dict, description="custom: keyword arguments of the factory")

    @model_validator(mode="after")
    def _custom(self) -> ArchConfig:
        if self.name != "custom":
            if self.factory is not None or self.kwargs:
                raise ValueError(f"factory and kwargs are for name: custom only (name is {self.name!r})")
            return self
        if self.factory is None or not _FACTORY.fullmatch(self.factory):
            raise ValueError(f'a custom arch needs factory: "package.module:function", got {self.factory!r}')
        if self.channels or self.hidden:
            raise ValueError("a custom arch takes its widths from kwargs: leave 'channels' and 'hidden' empty")
        return self

    @model_validator(mode="after")
    def _vit(self) -> ArchConfig:
        if self.name == "vit" and self.embed_dim % self.heads:
            raise ValueError(f"vit embed_dim {self.embed_dim} is not divisible by heads {self.heads}")
        if self.name == "vit" and (self.channels or self.hidden):
            raise ValueError("a vit has no conv or classifier widths: leave 'channels' and 'hidden' empty")
        return self

    @model_validator(mode="after")
    def _widths(self) -> ArchConfig:
        if self.name == "cnn" and not self.channels:
            raise ValueError("a cnn needs at least one entry in 'channels'")
        if self.name == "mlp" and self.channels:
            raise ValueError("an mlp has no conv layers: leave 'channels' empty")
        if any(w <= 0 for w in [*self.channels, *self.hidden]):
            raise ValueError("layer widths must be positive")
        return self


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
        return self
