"""Architectures by name, rebuilt from a JSON-able spec.

A spec is the `ArchConfig` of params.yaml plus the input and output shape.
Widths are explicit lists, so a structurally pruned model (fewer channels)
is described by the same spec with smaller numbers and can be rebuilt.
The ViT fields (patch_size ... block_mlp) are used by "vit" only; a pruned
ViT records its per-block widths in them (`spec_of`), because head counts and
depth cannot be read back from the weights alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from torch import nn

from steps.compression import choices, vit


@dataclass(frozen=True)
class ModelSpec:
    name: str
    channels: list[int] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)
    batch_norm: bool = True
    # The data's shape. The pipeline always fills these from the manifest (torchkit.spec_from);
    # the defaults exist for library tests and old spec files, and every spec file records its own.
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    input_shape: list[int] = field(default_factory=list)
    """One sample's shape, [C, H, W] or [D] (features); empty = [in_channels, image_size, image_size]."""
    # custom only (custom.py): the user's factory "package.module:function" and its keyword arguments
    factory: str = ""
    kwargs: dict = field(default_factory=dict)
    # vit only (see vit.py): empty block_heads/block_mlp = heads and round(embed_dim * mlp_ratio) in every
    # block; head_dim 0 = embed_dim // heads. Pruning fills them in.
    patch_size: int = 7
    embed_dim: int = 64
    depth: int = 4
    heads: int = 4
    head_dim: int = 0
    mlp_ratio: float = 2.0
    pool: str = "cls"
    block_heads: list[int] = field(default_factory=list)
    block_mlp: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One input sample's shape: input_shape, or (in_channels, image_size, image_size) in older specs."""
        return tuple(self.input_shape) or (self.in_channels, self.image_size, self.image_size)

    @classmethod
    def from_dict(cls, raw: dict) -> ModelSpec:
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"model spec has unknown keys {sorted(unknown)}")
        return cls(**raw)


def _classifier(in_features: int, hidden: list[int], num_classes: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return layers


class MLP(nn.Sequential):
    """Flatten, then Linear+ReLU per hidden width, then the output layer."""

    def __init__(self, spec: ModelSpec) -> None:
        inputs = math.prod(spec.sample_shape)  # pixels of an image, or a table's features
        super().__init__(nn.Flatten(), *_classifier(inputs, spec.hidden, spec.num_classes))


class CNN(nn.Module):
    """Conv3x3 [+BN] + ReLU + MaxPool2 per width in `channels`, then an MLP head."""

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
        self.classifier = nn.Sequential(nn.Flatten(), *_classifier(in_ch * size * size, spec.hidden, spec.num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


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

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
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
        self.classifier = nn.Sequential(nn.Flatten(), *_classifier(in_ch, spec.hidden, spec.num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.layers(self.stem(x))))


ARCHITECTURES = choices.ARCHITECTURES  # "mlp" -> MLP, "cnn" -> CNN, "resnet" -> ResNet, "vit" -> vit.ViT


def build(spec: ModelSpec) -> nn.Module:
    return ARCHITECTURES.resolve(spec.name)(spec)


def spec_of(model: nn.Module, spec: ModelSpec) -> ModelSpec:
    """The spec that rebuilds `model` as it is now (checkpoint.save writes this one).

    A ViT's pruned widths go into the spec (vit.current_spec); the other
    architectures keep `spec`, and checkpoint.load shrinks their layers to
    the stored weights instead.
    """
    return vit.current_spec(model, spec) if isinstance(model, vit.ViT) else spec
