"""The base every params.yaml section derives from: unknown keys are refused, values are frozen."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistryChoice:
    """Field metadata: the value names an entry of `registry` (a `steps.compression.choices.Registry`, or any
    mapping of names). Code keys read it to find the module a params value selects."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def __repr__(self) -> str:
        return f"RegistryChoice({getattr(self.registry, 'kind', '?')})"


def choice(registry) -> Any:
    """The type of a params value chosen by name from `registry`: one of its names, with the registry
    attached (`Annotated[Literal[...], RegistryChoice(registry)]`)."""
    return Annotated[Literal[tuple(registry)], RegistryChoice(registry)]
