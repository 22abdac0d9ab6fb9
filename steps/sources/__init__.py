"""Data sources: readers from files on disk to one `RawData` shape, chosen by `data.source`.

    idx           a folder with the four MNIST-style IDX files (the default, Fashion-MNIST)
    image_folder  root/<class>/<image> or root/{train,test}/<class>/<image>, PNG or JPEG
    arrays        a .npz file, or a folder of .npy files (x/y, optional x_test/y_test)
    table         a Parquet or CSV file, or a folder of them (data.label_column names the labels)

Each module's docstring gives its exact rules. `SOURCES` is the one registry of them, names only: the
config schema reads its valid `data.source` values from it, and a reader is imported when `read` is
asked for it, so importing this package (or `steps.sources.base`, for `DataError`) runs no reader and
the data stage's code key holds the one reader `data.source` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from steps.compression.choices import Registry

if TYPE_CHECKING:
    from steps.sources.base import RawData, SourceOptions

SOURCES = Registry("data source", {
    "idx": "steps.sources.idx:read",
    "image_folder": "steps.sources.image_folder:read",
    "arrays": "steps.sources.arrays:read",
    "table": "steps.sources.table:read",
})
"""name -> reader, a function (path, SourceOptions) -> RawData."""

__all__ = ["SOURCES", "read"]


def read(name: str, path: Path | str, options: SourceOptions | None = None) -> RawData:
    """Read `path` with the source called `name`; options default to SourceOptions()."""
    from steps.sources.base import DataError, SourceOptions

    reader = SOURCES.resolve(name)
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: does not exist (data.path for the {name} source)")
    return reader(path, options if options is not None else SourceOptions())
