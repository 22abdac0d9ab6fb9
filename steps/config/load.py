"""Reading params.yaml: parse, validate, and say exactly what is wrong (ConfigError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from steps.config.schema import Params
from steps.core.layout import PARAMS_FILE


class ConfigError(ValueError):
    """params.yaml (or a -S override) is invalid; the message names key and value."""


def format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid setting(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (value {e['input']!r})")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e['input']!r})")
    return "\n".join(lines)


def validate(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate an already-parsed mapping; raise ConfigError naming every bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err, source)) from None
    if params.sweep.grid:  # a bad grid is a bad params.yaml, refused before any work like any other key
        from steps.config.grid import sweep_members  # grid builds on validate's errors

        sweep_members(params, params.sweep.grid, f"{source}: sweep.grid")
    return params


def read_raw(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`, or ConfigError naming the file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def load(root: Path | str = ".") -> Params:
    """Parse and validate `<root>/params.yaml`."""
    path = Path(root) / PARAMS_FILE
    return validate(read_raw(path), source=str(path))
