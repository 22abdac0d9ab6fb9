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


def validate(raw: Any, source: str = PARAMS_FILE, *, stage: str | None = None) -> Params:
    """Validate an already-parsed mapping; raise ConfigError naming every bad key.

    `stage`: the one stage about to run alone (`python -m steps.<stage>`), when params that no whole run
    accepts are fine for it (today: data.source text, which only the data stage can use so far)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw, context={"stage": stage})
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


def load(root: Path | str = ".", *, stage: str | None = None) -> Params:
    """Parse and validate `<root>/params.yaml` (for `stage` alone: `validate`)."""
    path = Path(root) / PARAMS_FILE
    return validate(read_raw(path), source=str(path), stage=stage)
