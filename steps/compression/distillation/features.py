"""Intermediate activations by module name, for feature-based distillation.

Names are those of `dict(model.named_modules())`: for `models.CNN` with
batch norm, block k of `features` is `features.{4k}` Conv2d,
`features.{4k+1}` BatchNorm2d, `features.{4k+2}` ReLU, `features.{4k+3}`
MaxPool2d (without batch norm: 3k, 3k+1 ReLU, 3k+2 MaxPool2d).

    with FeatureTap(model, ["features.2", "features.6"]) as tap:
        logits = model(x)
        feats = tap.outputs          # {"features.2": Tensor, "features.6": Tensor}
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

_LISTED = 40  # module names shown in an error before "... and N more"


def module_names(model: nn.Module) -> list[str]:
    """Every sub-module name that FeatureTap accepts (the root module "" excluded), in registration order."""
    return [name for name, _ in model.named_modules() if name]


def _describe(model: nn.Module) -> str:
    """'name (Type)' for each tappable module, shortened when the model is large."""
    entries = [f"{name} ({type(m).__name__})" for name, m in model.named_modules() if name]
    if len(entries) > _LISTED:
        entries = entries[:_LISTED] + [f"... and {len(entries) - _LISTED} more"]
    return ", ".join(entries) or "(the model has no sub-modules)"


def resolve(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Name -> module, raising ValueError naming the first unknown name and listing the valid ones."""
    modules = dict(model.named_modules())
    resolved = {}
    for name in names:
        if not name or name not in modules:
            raise ValueError(f"{type(model).__name__} has no module named {name!r}; choose among: {_describe(model)}")
        resolved[name] = modules[name]
    return resolved


class FeatureTap:
    """Context manager: forward hooks on named modules; `outputs[name]` is the latest output of each.

    Outputs are cloned by default (`clone=True`): `models.CNN` uses
    `ReLU(inplace=True)`, so without a copy the output of a Conv2d or
    BatchNorm2d would be overwritten by the ReLU that follows it. The clone
    stays in the autograd graph, so a loss on a student's features trains
    the student. A module called more than once per forward (a shared ReLU,
    as in `models.BasicBlock`) keeps its last output; tap the block itself
    (e.g. "layers.0") for a block's output. Hooks are removed on exit, also
    when the body raises.
    Unknown names raise ValueError at construction, before any hook is set.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], *, clone: bool = True) -> None:
        self.modules = resolve(model, dict.fromkeys(names))
        self.clone = clone
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = []

    def _hook(self, name: str):
        def store(module: nn.Module, inputs, output) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"module {name!r} ({type(module).__name__}) returned "
                                f"{type(output).__name__}, not a Tensor; tap a module that returns one")
            self.outputs[name] = output.clone() if self.clone else output

        return store

    def __enter__(self) -> FeatureTap:
        if self._handles:
            raise RuntimeError("this FeatureTap is already active; it cannot be entered twice")
        self.outputs.clear()
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in self.modules.items()]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
