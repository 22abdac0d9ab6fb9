"""`-S key=value` overrides, written into params.yaml as `dvc exp run -S` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from steps.config.load import PARAMS_FILE, ConfigError, read_raw, validate
from steps.config.schema import Params
from steps.core.files import atomic_write


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"-S {item!r}: expected KEY=VALUE, e.g. -S teacher.train.epochs=2")
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"-S {item!r}: value is not valid YAML: {err}") from None
    if not isinstance(parsed, (str, int, float, bool, list, dict, type(None))):
        parsed = value  # e.g. YAML 1.1 turns 2024-01-01 into a date: keep what the user typed
    return key.strip().split("."), parsed


def _set_path(tree: Any, path: list[str], value: Any, item: str) -> None:
    node = tree
    for depth, part in enumerate(path[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise ConfigError(f"-S {item!r}: {where} is not a section of params.yaml")
        node = child
    node[path[-1]] = value


def apply_overrides(root: Path | str, overrides: list[str]) -> Params:
    """Apply `-S key=value` overrides to params.yaml, as `dvc exp run -S` does.

    The file is only rewritten when the result validates, so a bad override
    loses nothing; comments and key order survive (ruamel round-trip), and
    dvc.lock then records exactly the params that ran.
    """
    from ruamel.yaml import YAML  # DVC's own YAML library; keeps comments

    path = Path(root) / PARAMS_FILE
    read_raw(path)  # clear error for a missing or malformed file
    yaml_rt = YAML()
    tree = yaml_rt.load(path.read_text())
    for item in overrides:
        keys, value = _parse_override(item)
        _set_path(tree, keys, value, item)
    params = validate(json.loads(json.dumps(tree, default=str)), source=f"{path} with -S overrides")
    def write(tmp: Path) -> None:
        with tmp.open("w") as fh:
            yaml_rt.dump(tree, fh)

    atomic_write(path, write)  # an interrupted write never leaves a truncated params.yaml
    return params
