"""The base every params.yaml section derives from: unknown keys are refused, values are frozen."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def unused(self) -> tuple[str, ...]:
        """Fields (dotted, below this section) that this section's own values switch off, e.g. prune.transformer
        unless prune.method is transformer: code keys leave out the modules chosen there (config/selected.py)."""
        return ()

    def implied(self) -> tuple[BaseModel, ...]:
        """Sections this section's values imply beyond its own fields (distill's keys imply a list of
        distillation terms, each naming a registry entry): code keys walk them like fields."""
        return ()


class RegistryChoice:
    """Field metadata: the value names an entry of `registry` (a `steps.compression.choices.Registry`). Code keys
    read it to find the module a params value selects (steps/config/selected.py)."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def __repr__(self) -> str:
        return f"RegistryChoice({getattr(self.registry, 'kind', '?')})"


def choice(registry, *names: str) -> Any:
    """The type of a params value chosen by name from `registry`: one of its names (or of `names`, e.g. the
    one tag of a tagged union's member), with the registry attached: `Annotated[Literal[...], RegistryChoice]`."""
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise ValueError(f"{unknown} are not in the {getattr(registry, 'kind', '?')} registry")
    return Annotated[Literal[names or tuple(registry)], RegistryChoice(registry)]
