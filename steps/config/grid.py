"""Sweep grids: `-S key=v1,v2` axes and every combination of them, each a validated Params."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from steps.config.load import ConfigError, format_errors
from steps.config.schema import SWEEPABLE_SECTIONS, Params


@dataclass(frozen=True)
class SweepMember:
    """One combination of a sweep grid: its overrides and the full params it trains with."""

    name: str
    overrides: dict[str, Any]
    params: Params

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.overrides.items())


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`-S key=v1,v2,...` items -> {key: [v1, v2, ...]}; each value is YAML (`-S distill.student.hidden=[16],[32]`)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"-S {item!r}: expected KEY=V1,V2,..., e.g. -S prune.target_sparsity=0.5,0.7,0.9")
        try:
            parsed = yaml.safe_load(f"[{values}]")  # a YAML flow sequence: commas inside [...] stay in one value
        except yaml.YAMLError as err:
            raise ConfigError(f"-S {item!r}: values are not valid YAML: {err}") from None
        if key.strip() in grid:
            raise ConfigError(f"-S {item!r}: {key.strip()} is given twice")
        grid[key.strip()] = [v if isinstance(v, (str, int, float, bool, list, dict, type(None))) else str(v)
                             for v in parsed]
    return grid


def _with_value(dumped: dict, key: str, value: Any, source: str) -> dict:
    """A copy of `dumped` with `key` (dotted) set to `value`; the key must already exist in a sweepable section."""
    parts = key.split(".")
    if parts[0] not in SWEEPABLE_SECTIONS:
        sections = ", ".join(f"{s}.*" for s in SWEEPABLE_SECTIONS)
        raise ConfigError(f"{source}: {key}: a sweep varies only {sections} "
                          "(data and teacher are shared by all members, evaluation is common)")
    tree = json.loads(json.dumps(dumped))
    node = tree
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{source}: {key}: not a param ({'.'.join(parts[:depth + 1])} does not exist)")
        if depth == len(parts) - 1:
            node[part] = value
        node = node[part]
    tree["sweep"] = {}
    return tree


def sweep_members(params: Params, grid: dict[str, list[Any]], source: str = "sweep grid") -> list[SweepMember]:
    """Every combination of `grid` applied to `params`, validated; ConfigError names the key and value.

    Each value is checked alone first (the error names its key), then each combination (some settings
    constrain each other, e.g. a hint weight and its layers).
    """
    dumped = params.model_dump(mode="json")
    for key, values in grid.items():
        if not values:
            raise ConfigError(f"{source}: {key}: no values")
        for value in values:
            try:
                Params.model_validate(_with_value(dumped, key, value, source))
            except ValidationError as err:
                raise ConfigError(format_errors(err, f"{source}: {key}={value!r}")) from None
    members = []
    for i, combo in enumerate(itertools.product(*grid.values()), start=1):
        overrides = dict(zip(grid, combo, strict=True))
        tree = dumped
        for key, value in overrides.items():
            tree = _with_value(tree, key, value, source)
        try:
            member_params = Params.model_validate(tree)
        except ValidationError as err:
            raise ConfigError(format_errors(err, f"{source}: combination {overrides}")) from None
        members.append(SweepMember(f"m{i:02d}", overrides, member_params))
    return members
