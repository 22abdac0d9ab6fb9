"""Model families: what a stage may ask of any model, answered by the family that built it.

A stage never checks a model's class (`isinstance(model, ViT)`); it asks `family_of(model)` for the hooks
below. A family is one module (or folder) with its config, its builder and these hooks; `FAMILIES` in
`steps.compression.choices` is its one registry line.

Hooks:
    name              the registry name (`arch.name`)
    prune_methods     the `prune.method` values that can prune this family
    budget_searchable whether the budget search (per-layer channel widths) can cut it
    pooled_layer(m)   the module whose output the classifier head reads (distillation's pooled features)
    attention_maps(m) one module name per transformer block whose output is that block's attention
                      probabilities (B, heads, N, N); [] for a family without attention
    hidden_states(m)  one module name per transformer block whose output is its hidden state (B, N, D); []
                      for a family without blocks
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class Family:
    name: str
    prune_methods: frozenset[str]
    budget_searchable: bool
    pooled_layer: Callable[[nn.Module], str]
    attention_maps: Callable[[nn.Module], list[str]]
    hidden_states: Callable[[nn.Module], list[str]]


def _no_layers(model: nn.Module) -> list[str]:
    return []


def sequential_pooled_layer(model: nn.Module) -> str:
    """The sibling before the last Linear of a Sequential classifier (a CNN's last hidden ReLU, or its Flatten)."""
    modules = dict(model.named_modules())
    last = [name for name, m in modules.items() if isinstance(m, nn.Linear)][-1]
    parent, _, index = last.rpartition(".")
    if not index.isdigit() or int(index) == 0 or not isinstance(modules[parent], nn.Sequential):
        raise ValueError(f"cannot find the features {type(model).__name__}'s output layer {last!r} reads "
                         "(it is not inside a Sequential after another layer)")
    return f"{parent}.{int(index) - 1}" if parent else str(int(index) - 1)


def _vit_attention_maps(model: nn.Module) -> list[str]:
    return [f"blocks.{i}.attn.attn_probs" for i in range(len(model.blocks))]


def _vit_hidden_states(model: nn.Module) -> list[str]:
    return [f"blocks.{i}" for i in range(len(model.blocks))]


_CHANNELS = frozenset({"magnitude", "structured"})
CONVOLUTIONAL = Family("cnn", _CHANNELS, True, sequential_pooled_layer, _no_layers, _no_layers)
VIT = Family("vit", frozenset({"magnitude", "transformer"}), False, lambda model: "pool", _vit_attention_maps,
             _vit_hidden_states)


def family_of(model: nn.Module) -> Family:
    """The family that built `model` (the vit for a ViT; the channel-pruned families otherwise)."""
    from steps.compression.vit import ViT

    return VIT if isinstance(model, ViT) else CONVOLUTIONAL
