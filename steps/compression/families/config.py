"""The base of every family's params.yaml config (`teacher.arch`, `distill.student`).

Each family's `config.py` derives one class from `ArchSettings` with `name: Literal["<family>"]` and
its own fields; `steps.config.models.ArchConfig` is the tagged union of them on `name`. These modules
import no torch (and nothing of shrinkflow's config, which the library may not import), so the schema
validates a family's settings without loading the library; that is also why the base restates
`steps.config.base.Section`'s two settings instead of deriving from it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

SHARED_WHEN_FLAT = {"channels": [], "hidden": [], "batch_norm": False}
"""Keys params.yaml wrote for every family when the arch was one flat class, each with the value that
says "no such layers". A family without the key accepts it at that value (the README's
`{name: vit, channels: [], hidden: [], ...}`, an mlp's `batch_norm: false`), and refuses it, naming
the key, at any other."""


class ArchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    saves_directory: ClassVar[bool] = False
    """Whether the family's checkpoint is a folder (hf: a save_pretrained one) instead of a .safetensors file
    with its .json spec beside it (steps.core.layout.model_files)."""
    reads_text: ClassVar[bool] = False
    """Whether the family reads token ids (data.source text) instead of images or feature vectors."""
    budget_ranks_by_transformer: ClassVar[bool] = False
    """Whether the budget search on the family ranks heads, FFN neurons and layers by prune.transformer's
    importance and depth_metric (hf: steps/prune/hf_search.py), which a budget then leaves in use."""

    def spec_fields(self, root) -> dict[str, Any]:
        """These settings under ModelSpec's names (torchkit.spec_from adds the data's sizes); `root`, the
        project root, for a family whose settings name files."""
        return self.model_dump()

    @property
    def files(self) -> tuple[str, ...]:
        """Files or folders these settings load a model from (as params.yaml names them): the teacher stage's
        inputs besides the data. Empty for a family built from its settings alone."""
        return ()

    @property
    def widths(self) -> list[int]:
        """The layer widths it names, conv channels then classifier hidden (a label for plots); [] for a
        family sized by other settings (vit) or by its factory (custom)."""
        return []

    @model_validator(mode="before")
    @classmethod
    def _drop_flat_leftovers(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        return {key: value for key, value in raw.items()
                if key in cls.model_fields or key not in SHARED_WHEN_FLAT or value != SHARED_WHEN_FLAT[key]}

    @field_validator("channels", "hidden", check_fields=False)
    @classmethod
    def _positive_widths(cls, widths: list[int]) -> list[int]:
        if any(w <= 0 for w in widths):
            raise ValueError("layer widths must be positive")
        return widths
