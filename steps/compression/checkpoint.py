"""Self-describing checkpoints: safetensors weights + a JSON spec beside them.

Loading never unpickles: weights come from safetensors and the module is
rebuilt from the spec, so a file from storage cannot execute code.
Writes go to a temporary name and are renamed into place, so a crash never
leaves a partial file that looks complete.

A structurally pruned model (structured.py) keeps its spec but has narrower
layers; loading rebuilds the spec's model and then shrinks each layer to the
shapes stored in the weights file, so no pruning history needs saving.
A custom model (custom.py) is rebuilt the same way: the spec records its factory and kwargs, so the
user's code builds the module and the weights file gives the pruned shapes.
A pruned ViT is the exception: its head counts (qkv holds 3 * heads *
head_dim rows; the split is not in the weights) and depth (a count of
blocks, not a tensor shape) cannot be read from the weights, so `save` writes the spec the model
has now (`models.spec_of`: per-block heads and MLP widths, embed_dim, depth)
and `load` builds those shapes directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from steps.compression.models import ModelSpec, build, spec_of
from steps.core.files import OutputWriteError, write_json  # noqa: F401  (re-exported: what checkpoints write)
from steps.core.files import atomic_write as _atomic_write


def atomic_write(path: Path, write) -> None:
    """`steps.core.files.atomic_write`, with safetensors' own disk-full error reported like an OSError."""
    _atomic_write(path, write, write_errors=(OSError, SafetensorError))


def save(model: nn.Module, spec: ModelSpec, weights: Path, spec_file: Path, meta: dict | None = None) -> None:
    """Save weights (contiguous, no pruning masks) and the spec that rebuilds them (`spec_of(model, spec)`)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    leftovers = [k for k in state if k.endswith(("_orig", "_mask"))]
    if leftovers:
        raise ValueError(f"pruning masks not folded into weights: {leftovers[:3]}")
    atomic_write(weights, lambda tmp: save_file(state, str(tmp)))
    write_json(spec_file, {"spec": spec_of(model, spec).to_dict(), "meta": meta or {}})


def _fresh_conv(m: nn.Conv2d, weight: torch.Tensor) -> nn.Conv2d:
    return nn.Conv2d(weight.shape[1] * m.groups, weight.shape[0], m.kernel_size, stride=m.stride,
                     padding=m.padding, dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
                     padding_mode=m.padding_mode)


def _fresh_linear(m: nn.Linear, weight: torch.Tensor) -> nn.Linear:
    return nn.Linear(weight.shape[1], weight.shape[0], bias=m.bias is not None)


def _fresh_batchnorm(m: nn.modules.batchnorm._BatchNorm, sized: torch.Tensor) -> nn.Module:
    return type(m)(sized.shape[0], eps=m.eps, momentum=m.momentum, affine=m.affine,
                   track_running_stats=m.track_running_stats)


RESIZABLE: dict[type, Callable[[Any, torch.Tensor], nn.Module]] = {
    # layer type -> a fresh layer shaped like the stored tensor, other settings copied
    nn.Conv2d: _fresh_conv,
    nn.Linear: _fresh_linear,
    nn.BatchNorm1d: _fresh_batchnorm,
    nn.BatchNorm2d: _fresh_batchnorm,
}


def _sizing(name: str, m: nn.Module, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(stored, built) tensor pair that sizes the layer: weight, or running_mean for a BN without affine."""
    for attr in ("weight", "running_mean"):
        stored, built = state.get(f"{name}.{attr}"), getattr(m, attr, None)
        if stored is not None and built is not None:
            return stored, built
    return None


def _shrink_to(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Replace each layer whose stored tensors are smaller than built with one of the stored size.

    Only shrinking is allowed: structured pruning never widens a layer, and a
    wider tensor means the weights belong to another spec (refused by the
    strict load that follows). Returns whether anything was replaced.
    """
    resized = False
    for name, m in list(model.named_modules()):
        pair = _sizing(name, m, state) if type(m) in RESIZABLE else None
        if pair is None or pair[0].shape == pair[1].shape:
            continue
        stored, built = pair
        if stored.dim() != built.dim() or any(s > b for s, b in zip(stored.shape, built.shape, strict=True)):
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, RESIZABLE[type(m)](m, stored))
        resized = True
    return resized


def _check_forward(model: nn.Module, spec: ModelSpec) -> None:
    """Shrunk layers must still chain: one forward pass on a blank image proves it."""
    with torch.no_grad():
        model(torch.zeros(1, *spec.sample_shape))


def load(weights: Path, spec_file: Path) -> tuple[nn.Module, ModelSpec]:
    """Rebuild the model from its spec, shrink layers a structured pruning narrowed, load strictly."""
    for path in (weights, spec_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: model file missing (did the stage that writes it run?)")
    try:
        spec = ModelSpec.from_dict(json.loads(Path(spec_file).read_text())["spec"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{spec_file}: not a valid model spec: {err}") from None
    model = build(spec)
    try:
        state = load_file(str(weights))
        resized = _shrink_to(model, state)
        model.load_state_dict(state, strict=True)
        model.eval()
        if resized:
            _check_forward(model, spec)
    except Exception as err:  # safetensors and torch raise several types for a bad file
        raise ValueError(f"{weights}: weights do not match spec {spec_file}: {err}") from None
    return model, spec
