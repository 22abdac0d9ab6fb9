"""The cnn family's model and hooks: channel pruning, a checkpoint rebuilt from the stored widths."""

from __future__ import annotations

from torch import nn

from steps.compression.families import Family
from steps.compression.families.cnn.config import CNNConfig
from steps.compression.families.layers import (
    built_of_resizable_layers,
    classifier,
    no_layers,
    same_spec,
    sequential_pooled_layer,
    zeros_input,
)
from steps.compression.families.resize import shrink_to
from steps.compression.families.spec import ModelSpec


class CNN(nn.Module):
    """Conv3x3 [+BN] + ReLU + MaxPool2 per width in `channels`, then an MLP head."""

    shrinkflow_family = "cnn"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        in_ch, size = spec.in_channels, spec.image_size
        for width in spec.channels:
            blocks.append(nn.Conv2d(in_ch, width, 3, padding=1, bias=not spec.batch_norm))
            if spec.batch_norm:
                blocks.append(nn.BatchNorm2d(width))
            blocks += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            in_ch, size = width, size // 2
        if size < 1:
            raise ValueError(f"{len(spec.channels)} pooling stages shrink a {spec.image_size}px image to nothing")
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Flatten(), *classifier(in_ch * size * size, spec.hidden, spec.num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


FAMILY = Family("cnn", frozenset({"magnitude", "structured"}), True, sequential_pooled_layer, no_layers, no_layers,
                config=CNNConfig, build=CNN, needs_images=True, spec_of=same_spec, fit_weights=shrink_to,
                example_input=zeros_input, refuse_unprunable=built_of_resizable_layers)
