"""params.yaml for the user's own model: `{name: custom, factory: "package.module:function", kwargs: {...}}`.

Torch-free: the factory is only checked for its form here; families/custom/model.py imports and calls it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from steps.compression.families.config import ArchSettings

_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class CustomConfig(ArchSettings):
    """The user's nn.Module, built by factory(**kwargs); its widths are the factory's business (kwargs)."""

    name: Literal["custom"]
    factory: str = Field(description='"package.module:function" returning an nn.Module')
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory")

    @field_validator("factory")
    @classmethod
    def _importable_form(cls, factory: str) -> str:
        if not _FACTORY.fullmatch(factory):
            raise ValueError('a custom arch needs factory: "package.module:function"')
        return factory
