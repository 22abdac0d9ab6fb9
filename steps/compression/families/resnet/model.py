"""The resnet family's model and hooks: channel pruning through the residual couplings (DepGraph)."""

from __future__ import annotations

from torch import nn

from steps.compression.families import Family
from steps.compression.families.layers import (
    built_of_resizable_layers,
    classifier,
    no_layers,
    same_spec,
    sequential_pooled_layer,
    zeros_input,
)
from steps.compression.families.resize import shrink_to
from steps.compression.families.resnet.config import ResNetConfig
from steps.compression.families.spec import ModelSpec


class BasicBlock(nn.Module):
    """He et al. 2016: two Conv3x3+BN, added to a shortcut, then ReLU.

    The shortcut is a 1x1 conv+BN only when the shape changes, so channel
    pruning must keep the block's output and its input coupled (DepGraph does).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: Conv3x3+BN+ReLU stem, one BasicBlock per width, global pool, MLP head.

    The first block keeps the resolution, each later one halves it (stride 2).
    """

    shrinkflow_family = "resnet"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        # ResNetConfig refuses these in params.yaml; a spec file or library call reaches here unchecked
        if not spec.batch_norm:
            raise ValueError("resnet needs batch_norm: true (its blocks are Conv+BN by design)")
        if not spec.channels:
            raise ValueError("resnet needs at least one width in channels")
        first = spec.channels[0]
        self.stem = nn.Sequential(nn.Conv2d(spec.in_channels, first, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(first), nn.ReLU(inplace=True))
        blocks, in_ch = [], first
        for i, width in enumerate(spec.channels):
            blocks.append(BasicBlock(in_ch, width, stride=1 if i == 0 else 2))
            in_ch = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), *classifier(in_ch, spec.hidden, spec.num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.layers(self.stem(x))))


FAMILY = Family("resnet", frozenset({"magnitude", "structured"}), True, sequential_pooled_layer, no_layers,
                no_layers, config=ResNetConfig, build=ResNet, needs_images=True, spec_of=same_spec,
                fit_weights=shrink_to, example_input=zeros_input, refuse_unprunable=built_of_resizable_layers)
