"""A model that takes raw inputs: the data's scaling and standardisation as the first layer of its graph.

What the ONNX files are exported from, so a deployable takes what a caller has (pixel values 0-255,
unscaled features) and no caller must copy the pipeline's preprocessing. The operations are the ones
training used (steps/core/datasets.py `normalise`: x / scale, minus mean, divided by std, in float32,
in that order), so the wrapped model on raw inputs computes bit for bit what the model computes on
normalised ones.
"""

from __future__ import annotations

import torch
from torch import nn


class RawInput(nn.Module):
    """`model((x / scale - mean) / std)`; mean and std per channel (images, scale 255) or per feature (scale 1)."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], images: bool):
        super().__init__()
        self.model = model
        shape = (1, -1, 1, 1) if images else (1, -1)
        self.scale = 255.0 if images else None
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            x = x / self.scale
        return self.model((x - self.mean) / self.std)
