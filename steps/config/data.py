"""params.yaml `data:`: where the raw data is and how to read it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from steps.config.base import Section as _Section
from steps.config.base import choice
from steps.sources import SOURCES


class DataConfig(_Section):
    """Where the raw data is and how to read it (steps/sources/ has one module per source)."""

    source: choice(SOURCES) = Field(default="idx", description="which reader: " + " | ".join(SOURCES))
    path: str = Field(min_length=1, description="the source's folder or file (data.raw_dir is the old name)")
    val_size: int = Field(ge=1, description="training rows held out for validation")
    val_split: Literal["stratified", "random"] = Field(
        default="stratified", description="stratified per class, or a plain seeded permutation (the pre-16 split)")
    image_size: int | None = Field(default=None, ge=1, description="image sources: resize to this square size")
    channels: Literal["grayscale", "rgb"] | None = Field(default=None, description="image sources: convert to this")
    label_column: str | None = Field(default=None, min_length=1, description="table: the label column")
    feature_columns: list[str] | None = Field(default=None, description="table: feature columns (null: all others)")
    class_names: list[str] | None = Field(default=None, description="idx/arrays: names of labels 0..K-1")
    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="held out as test when a source has none")
    train_limit: int | None = Field(default=None, ge=1, description="use only this many training rows")
    test_limit: int | None = Field(default=None, ge=1, description="use only this many test rows")

    @model_validator(mode="before")
    @classmethod
    def _raw_dir_is_path(cls, raw: Any) -> Any:
        """`raw_dir` (the key before data sources existed) is read as `path`; when both are given, raw_dir
        wins, so old overrides (-S data.raw_dir=...) keep working. DVC's dependency template reads
        data.path from params.yaml itself, so new projects should write path."""
        if isinstance(raw, dict) and "raw_dir" in raw:
            raw = {**raw, "path": raw["raw_dir"]}
            del raw["raw_dir"]
        return raw

    @model_validator(mode="after")
    def _table_needs_label(self) -> DataConfig:
        if self.source == "table" and self.label_column is None:
            raise ValueError("the table source needs data.label_column (the column holding the labels)")
        return self
