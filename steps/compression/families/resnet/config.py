"""params.yaml for a resnet: `{name: resnet, channels: [...], hidden: [...]}` (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from steps.compression.families.config import ArchSettings


class ResNetConfig(ArchSettings):
    """A Conv+BN stem, one BasicBlock per width in `channels` (each later one halving the resolution), an MLP head."""

    name: Literal["resnet"]
    channels: list[int] = Field(default_factory=list, description="block widths")
    hidden: list[int] = Field(default_factory=list, description="hidden widths of the classifier")
    batch_norm: bool = Field(default=True, description="always true: the blocks are Conv+BN by design")

    @property
    def widths(self) -> list[int]:
        return [*self.channels, *self.hidden]

    @model_validator(mode="after")
    def _blocks_with_batch_norm(self) -> ResNetConfig:
        if not self.channels:
            raise ValueError("resnet needs at least one width in channels")
        if not self.batch_norm:
            raise ValueError("resnet needs batch_norm: true (its blocks are Conv+BN by design)")
        return self
