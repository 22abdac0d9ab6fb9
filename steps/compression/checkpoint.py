"""Self-describing checkpoints: safetensors weights + a JSON spec beside them.

Loading never unpickles: weights come from safetensors and the module is
rebuilt from the spec, so a file from storage cannot execute code.
Writes go to a temporary name and are renamed into place, so a crash never
leaves a partial file that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from steps.compression.models import ModelSpec, build


def atomic_write(path: Path, write) -> None:
    """Call `write(tmp_path)`, then rename tmp_path onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def save(model: nn.Module, spec: ModelSpec, weights: Path, spec_file: Path, meta: dict | None = None) -> None:
    """Save weights (contiguous, no pruning masks) and the spec that rebuilds them."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    leftovers = [k for k in state if k.endswith(("_orig", "_mask"))]
    if leftovers:
        raise ValueError(f"pruning masks not folded into weights: {leftovers[:3]}")
    atomic_write(weights, lambda tmp: save_file(state, str(tmp)))
    write_json(spec_file, {"spec": spec.to_dict(), "meta": meta or {}})


def load(weights: Path, spec_file: Path) -> tuple[nn.Module, ModelSpec]:
    """Rebuild the model from its spec and load the weights strictly."""
    for path in (weights, spec_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: model file missing (did the stage that writes it run?)")
    try:
        spec = ModelSpec.from_dict(json.loads(Path(spec_file).read_text())["spec"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{spec_file}: not a valid model spec: {err}") from None
    model = build(spec)
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except Exception as err:  # safetensors and torch raise several types for a bad file
        raise ValueError(f"{weights}: weights do not match spec {spec_file}: {err}") from None
    return model.eval(), spec
