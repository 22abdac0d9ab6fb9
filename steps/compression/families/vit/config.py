"""params.yaml for a vit: `{name: vit, patch_size, embed_dim, depth, heads, mlp_ratio, pool}` (torch-free).

The names are ModelSpec's, so torchkit.spec_from passes them through; the pruned widths (head_dim,
block_heads, block_mlp) are the spec's only, written by pruning.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from steps.compression.families.config import ArchSettings


class ViTConfig(ArchSettings):
    """A Vision Transformer (families/vit/model.py)."""

    name: Literal["vit"]
    patch_size: int = Field(default=7, ge=1, description="patch side in pixels; must divide the image size")
    embed_dim: int = Field(default=64, ge=1, description="residual width")
    depth: int = Field(default=4, ge=1, description="transformer blocks")
    heads: int = Field(default=4, ge=1, description="attention heads per block; must divide embed_dim")
    mlp_ratio: float = Field(default=2.0, gt=0, description="MLP hidden width / embed_dim")
    pool: Literal["cls", "mean"] = Field(default="cls", description="class token or mean over tokens")

    @model_validator(mode="after")
    def _whole_heads(self) -> ViTConfig:
        if self.embed_dim % self.heads:
            raise ValueError(f"vit embed_dim {self.embed_dim} is not divisible by heads {self.heads}")
        return self
