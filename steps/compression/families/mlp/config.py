"""params.yaml for an mlp: `{name: mlp, hidden: [...]}` (torch-free, read by the config schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steps.compression.families.config import ArchSettings


class MLPConfig(ArchSettings):
    """Flatten, then Linear+ReLU per hidden width, then the output layer."""

    name: Literal["mlp"]
    hidden: list[int] = Field(default_factory=list, description="hidden widths of the classifier")

    @property
    def widths(self) -> list[int]:
        return list(self.hidden)
