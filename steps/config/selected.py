"""The modules a project's params select: every choice by name under some params paths.

A value of a `base.choice(REGISTRY)` field (teacher.arch.name: cnn, data.source: idx, ...) makes the stage
that reads it run that registry entry's module, so a stage's code key adds those modules to its imports
(steps/core/dag.py). They are read from the validated params and the fields' `RegistryChoice` metadata,
through nested sections, lists, dicts and unions (a tagged union's value is one section), and from the
registries' "module:attribute" strings: nothing here imports an implementation (no torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel

from steps.config.base import RegistryChoice


def selected_modules(params: BaseModel, paths: Iterable[str]) -> set[str]:
    """The modules of the registry entries chosen at or under the dotted `paths` of `params` ("teacher.arch",
    "prune"), except where a section's `unused()` says its values switch a field off. A path through an unset
    optional section selects nothing; a path naming no field raises ValueError (a misspelt path would drop code)."""
    skip = frozenset(unused_paths(params))
    found: set[str] = set()
    for path in paths:
        owner, name = _owner(params, path)
        if owner is not None:
            found |= _field(owner, name, path, skip)
    return found


def unused_paths(section: BaseModel, prefix: str = "") -> set[str]:
    """Every params path some section's values switch off (`Section.unused`), from the root down."""
    found = {f"{prefix}{path}" for path in getattr(section, "unused", tuple)()}
    for name in type(section).model_fields:
        for value in _sections(getattr(section, name)):
            found |= unused_paths(value, f"{prefix}{name}.")
    return found


def _sections(value: Any) -> list[BaseModel]:
    if isinstance(value, BaseModel):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    return [item for item in items if isinstance(item, BaseModel)]


def _owner(params: BaseModel, path: str) -> tuple[BaseModel | None, str]:
    """The section holding the last field of `path` (None under an unset optional section), and its name."""
    *sections, name = path.split(".")
    node: Any = params
    for part in sections:
        node = _child(node, part, path)
        if node is None:
            return None, name
    _child(node, name, path)
    return node, name


def _child(node: Any, part: str, path: str) -> Any:
    if not isinstance(node, BaseModel) or part not in type(node).model_fields:
        raise ValueError(f"params have no {path!r} (no field {part!r} there)")
    return getattr(node, part)


def _field(model: BaseModel, name: str, path: str, skip: frozenset[str]) -> set[str]:
    if any(path == off or path.startswith(f"{off}.") for off in skip):
        return set()
    info = type(model).model_fields[name]
    registries = _registries([*info.metadata, info.annotation])
    return _chosen(getattr(model, name), registries, path, skip)


def _registries(annotations: Iterable[Any]) -> list:
    """The registries of every RegistryChoice in `annotations` (type arguments and Annotated metadata)."""
    found = []
    for item in annotations:
        if isinstance(item, RegistryChoice):
            found.append(item.registry)
        elif get_origin(item) is Annotated:
            found += _registries(item.__metadata__) + _registries([get_args(item)[0]])
        elif get_args(item):
            found += _registries(get_args(item))
    return found


def _chosen(value: Any, registries: list, path: str, skip: frozenset[str]) -> set[str]:
    """Registry modules named by `value`: a string any of the field's registries holds, or one inside a
    list or dict value; a section inside is walked field by field."""
    if isinstance(value, BaseModel):  # a tagged union's member is chosen by its `name`
        tag = getattr(value, "name", None)
        own = {registry.module_of(tag) for registry in registries if isinstance(tag, str) and tag in registry}
        implied = getattr(value, "implied", tuple)()
        return own.union(*(_field(value, name, f"{path}.{name}", skip) for name in type(value).model_fields),
                         *(_chosen(section, [], f"{path}.<implied>", skip) for section in implied))
    if isinstance(value, str):
        return {registry.module_of(value) for registry in registries if value in registry}
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    return set().union(*(_chosen(item, registries, path, skip) for item in items))
