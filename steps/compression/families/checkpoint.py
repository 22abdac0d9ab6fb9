"""Self-describing checkpoints: safetensors weights + a JSON spec beside them.

Loading never unpickles: weights come from safetensors and the module is
rebuilt from the spec, so a file from storage cannot execute code.
Writes go to a temporary name and are renamed into place, so a crash never
leaves a partial file that looks complete.

How a pruned model comes back is its family's business (families/__init__.py): `save` writes the
spec its family's `spec_of` gives (a pruned ViT's per-block heads and MLP widths, since head counts
and depth cannot be read from the weights), and `load` builds the spec's model and lets its family's
`fit_weights` take the stored shapes (a channel-pruned mlp, cnn, resnet or custom model keeps its
spec and gets its narrower layers from the weights file: resize.py), so no pruning history needs saving.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from steps.compression.families import family, spec_of
from steps.compression.families.spec import ModelSpec
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


def load(weights: Path, spec_file: Path) -> tuple[nn.Module, ModelSpec]:
    """Rebuild the model from its spec, fit it to the stored shapes (its family's `fit_weights`), load strictly."""
    for path in (weights, spec_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: model file missing (did the stage that writes it run?)")
    try:
        spec = ModelSpec.from_dict(json.loads(Path(spec_file).read_text())["spec"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{spec_file}: not a valid model spec: {err}") from None
    builder = family(spec.name)
    model = builder.build(spec)
    try:
        state = load_file(str(weights))
        resized = builder.fit_weights(model, state)
        model.load_state_dict(state, strict=True)
        model.eval()
        if resized:  # shrunk layers must still chain: one forward pass on a blank sample proves it
            with torch.no_grad():
                model(builder.example_input(spec))
    except Exception as err:  # safetensors and torch raise several types for a bad file
        raise ValueError(f"{weights}: weights do not match spec {spec_file}: {err}") from None
    return model, spec
