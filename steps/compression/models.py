"""Architectures by name, rebuilt from a JSON-able spec.

A spec is the `ArchConfig` of params.yaml plus the input and output shape.
Widths are explicit lists, so a structurally pruned model (fewer channels)
is described by the same spec with smaller numbers and can be rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    channels: list[int] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)
    batch_norm: bool = True
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10

    def to_dict(self) -> dict:
        return asdict(self)

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
        pixels = spec.in_channels * spec.image_size**2
        super().__init__(nn.Flatten(), *_classifier(pixels, spec.hidden, spec.num_classes))


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


ARCHITECTURES: dict[str, Callable[[ModelSpec], nn.Module]] = {"mlp": MLP, "cnn": CNN}


def build(spec: ModelSpec) -> nn.Module:
    try:
        factory = ARCHITECTURES[spec.name]
    except KeyError:
        raise ValueError(f"unknown architecture {spec.name!r}; choose one of {sorted(ARCHITECTURES)}") from None
    return factory(spec)
