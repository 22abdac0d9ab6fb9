"""params.yaml for a cnn: `{name: cnn, channels: [...], hidden: [...], batch_norm: true}` (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from steps.compression.families.config import ArchSettings


class CNNConfig(ArchSettings):
    """Conv3x3 [+BN] + ReLU + MaxPool2 per width in `channels`, then an MLP head."""

    name: Literal["cnn"]
    channels: list[int] = Field(default_factory=list, description="conv widths, one pooling stage each")
    hidden: list[int] = Field(default_factory=list, description="hidden widths of the classifier")
    batch_norm: bool = True

    @property
    def widths(self) -> list[int]:
        return [*self.channels, *self.hidden]

    @model_validator(mode="after")
    def _some_conv(self) -> CNNConfig:
        if not self.channels:
            raise ValueError("a cnn needs at least one entry in 'channels'")
        return self
