"""The custom family: the user's own nn.Module, built by `factory(**kwargs)` from their project.

`arch: {name: custom, factory: "package.module:function", kwargs: {...}}` names a function in a
module beside params.yaml (the stages put the project root on sys.path) or in an installed
package. The spec records factory and kwargs, so a checkpoint rebuilds the model without pickle:
the user's code builds the module, the safetensors file gives the weights and, after structured
pruning, the narrower shapes (checkpoint.load, resize.shrink_to). That is also why structured
pruning of a custom model is limited to layers the checkpoint can resize (`refuse_unprunable`):
anything else fails naming the layer, before torch-pruning touches it. The model carries no family
tag (its class is the user's), so `family_of` answers custom for it, as for any untagged module.
"""

from __future__ import annotations

import importlib
import inspect

from torch import nn

from steps.compression.families import Family
from steps.compression.families.custom.config import CustomConfig
from steps.compression.families.layers import no_layers, same_spec, sequential_pooled_layer, zeros_input
from steps.compression.families.resize import RESIZABLE, shrink_to


class CustomModelError(ValueError):
    """The factory cannot be imported or called, or its model does not fit the data; names the factory."""


def resolve_factory(factory: str):
    """The function `factory` ("package.module:function") names, or CustomModelError saying why not."""
    module_name, _, attribute = factory.partition(":")
    if not module_name or not attribute:
        raise CustomModelError(f'arch.factory {factory!r}: write it as "package.module:function"')
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CustomModelError(f"arch.factory {factory!r}: cannot import {module_name!r} ({err}); put the module "
                               "beside params.yaml or install its package") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise CustomModelError(f"arch.factory {factory!r}: {module_name} has no function {attribute!r}")
    return function


def build_custom(spec) -> nn.Module:
    """`factory(**kwargs)`; its model must be an nn.Module (checked here) that maps the data's samples
    to `spec.num_classes` logits (checked by the caller, which has a real batch: torchkit.build_for)."""
    if not spec.factory:
        raise CustomModelError("arch name custom needs arch.factory (\"package.module:function\")")
    function = resolve_factory(spec.factory)
    try:
        inspect.signature(function).bind(**spec.kwargs)
    except TypeError as err:
        raise CustomModelError(f"arch.factory {spec.factory!r}: arch.kwargs {sorted(spec.kwargs)} do not fit "
                               f"its signature {inspect.signature(function)} ({err})") from None
    model = function(**spec.kwargs)
    if not isinstance(model, nn.Module):
        raise CustomModelError(f"arch.factory {spec.factory!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


def refuse_unprunable(model: nn.Module) -> None:
    """Refuse, naming the first one, a layer holding weights that structured pruning cannot remove channels
    from and a checkpoint cannot rebuild at a narrower width (resize.RESIZABLE: Conv2d, Linear,
    BatchNorm). torch-pruning would skip or mis-slice such a layer (a raw nn.Parameter used in forward,
    a LayerNorm whose width no longer fits), and the pruned file could not be reloaded."""
    for name, module in model.named_modules():
        own = [p for p, _ in module.named_parameters(recurse=False)]
        if own and type(module) not in RESIZABLE:
            raise CustomModelError(
                f"layer {name or '<root>'!r} ({type(module).__name__}, parameters {own}) cannot be structurally "
                f"pruned: only {', '.join(t.__name__ for t in RESIZABLE)} layers hold weights here; use "
                "prune.method: magnitude for this model, or replace the layer")


FAMILY = Family("custom", frozenset({"magnitude", "structured"}), True, sequential_pooled_layer, no_layers,
                no_layers, config=CustomConfig, build=build_custom, needs_images=False, spec_of=same_spec,
                fit_weights=shrink_to, example_input=zeros_input, refuse_unprunable=refuse_unprunable)
