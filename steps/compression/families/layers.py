"""Torch pieces and hooks several families share: the MLP head, and the hook answers of a family without
attention blocks or special widths."""

from __future__ import annotations

import torch
from torch import nn

from steps.compression.families.spec import ModelSpec


def classifier(in_features: int, hidden: list[int], num_classes: int) -> list[nn.Module]:
    """Linear+ReLU per hidden width, then the output Linear."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return layers


def sequential_pooled_layer(model: nn.Module) -> str:
    """The sibling before the last Linear of a Sequential classifier (a CNN's last hidden ReLU, or its Flatten)."""
    modules = dict(model.named_modules())
    last = [name for name, m in modules.items() if isinstance(m, nn.Linear)][-1]
    parent, _, index = last.rpartition(".")
    if not index.isdigit() or int(index) == 0 or not isinstance(modules[parent], nn.Sequential):
        raise ValueError(f"cannot find the features {type(model).__name__}'s output layer {last!r} reads "
                         "(it is not inside a Sequential after another layer)")
    return f"{parent}.{int(index) - 1}" if parent else str(int(index) - 1)


def no_layers(model: nn.Module) -> list[str]:
    return []


def same_spec(model: nn.Module, spec: ModelSpec) -> ModelSpec:
    """A channel-pruned model keeps its spec: checkpoint.load reads the narrower widths from the weights."""
    return spec


def zeros_input(spec: ModelSpec) -> torch.Tensor:
    """One blank sample of the data's shape (an image or a feature vector)."""
    return torch.zeros(1, *spec.sample_shape)


def built_of_resizable_layers(model: nn.Module) -> None:
    """A built-in model holds only Conv2d, Linear and BatchNorm weights: nothing to refuse."""
