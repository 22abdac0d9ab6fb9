"""Intermediate activations by module name, for feature-based distillation.

Names are those of `dict(model.named_modules())`: for `models.CNN` with
batch norm, block k of `features` is `features.{4k}` Conv2d,
`features.{4k+1}` BatchNorm2d, `features.{4k+2}` ReLU, `features.{4k+3}`
MaxPool2d (without batch norm: 3k, 3k+1 ReLU, 3k+2 MaxPool2d).

    with FeatureTap(model, ["features.2", "features.6"]) as tap:
        logits = model(x)
        feats = tap.outputs          # {"features.2": Tensor, "features.6": Tensor}

A name may end in `[i]`: element i of a module that returns a tuple. A transformers attention module
returns (attention output, attention probabilities), so `hf.bert.encoder.layer.0.attention.self[1]` is
layer 0's attention probabilities (as transformers' own `OutputRecorder(index=1)` records them).
"""

from __future__ import annotations

from collections.abc import Iterable

import re

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

_LISTED = 40  # module names shown in an error before "... and N more"
_ELEMENT = re.compile(r"^(?P<module>.+)\[(?P<index>\d+)\]$")


def module_names(model: nn.Module) -> list[str]:
    """Every sub-module name that FeatureTap accepts (the root module "" excluded), in registration order."""
    return [name for name, _ in model.named_modules() if name]


def _describe(model: nn.Module) -> str:
    """'name (Type)' for each tappable module, shortened when the model is large."""
    entries = [f"{name} ({type(m).__name__})" for name, m in model.named_modules() if name]
    if len(entries) > _LISTED:
        entries = entries[:_LISTED] + [f"... and {len(entries) - _LISTED} more"]
    return ", ".join(entries) or "(the model has no sub-modules)"


def split_element(name: str) -> tuple[str, int | None]:
    """"blocks.0[1]" -> ("blocks.0", 1); a name without `[i]` -> (name, None)."""
    match = _ELEMENT.match(name)
    return (match["module"], int(match["index"])) if match else (name, None)


def resolve(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Name -> module (the module of a `name[i]`), raising ValueError naming the first unknown name and listing
    the valid ones."""
    modules = dict(model.named_modules())
    resolved = {}
    for name in names:
        module = split_element(name)[0]
        if not module or module not in modules:
            raise ValueError(f"{type(model).__name__} has no module named {module!r}; choose among: "
                             f"{_describe(model)}")
        resolved[name] = modules[module]
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
    Unknown names raise ValueError at construction, before any hook is set. A name ending in `[i]`
    keeps element i of the module's tuple output (see the module docstring).
    """

    def __init__(self, model: nn.Module, names: Iterable[str], *, clone: bool = True) -> None:
        self.modules = resolve(model, dict.fromkeys(names))
        self.clone = clone
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = []

    def _hook(self, name: str):
        index = split_element(name)[1]

        def store(module: nn.Module, inputs, output) -> None:
            if index is not None:
                output = _element(name, module, output, index)
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"module {name!r} ({type(module).__name__}) returned "
                                f"{type(output).__name__}, not a Tensor; tap a module that returns one"
                                f"{'' if index is not None else ' (or name an element of its tuple: name[i])'}")
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


def _element(name: str, module: nn.Module, output, index: int):
    if not isinstance(output, tuple | list) or index >= len(output):
        got = f"a {type(output).__name__} of {len(output)}" if isinstance(output, tuple | list) else \
            type(output).__name__
        raise TypeError(f"{name!r}: module {type(module).__name__} returned {got}, which has no element {index}")
    if output[index] is None:  # transformers' SDPA attention returns no probabilities
        raise TypeError(f"{name!r}: module {type(module).__name__} returned None as element {index} (a transformers "
                        "attention module computes its probabilities only with attn_implementation='eager')")
    return output[index]
