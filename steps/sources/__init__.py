"""Data sources: readers from files on disk to one `RawData` shape, chosen by `data.source`.

    idx           a folder with the four MNIST-style IDX files (the default, Fashion-MNIST)
    image_folder  root/<class>/<image> or root/{train,test}/<class>/<image>, PNG or JPEG
    arrays        a .npz file, or a folder of .npy files (x/y, optional x_test/y_test)
    table         a Parquet or CSV file, or a folder of them (data.label_column names the labels)

Each module's docstring gives its exact rules. `SOURCES` is the one list of
names: the config schema reads its valid `data.source` values from it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from steps.sources import arrays, idx, image_folder, table
from steps.sources.base import DataError, RawData, SourceOptions

Reader = Callable[[Path, SourceOptions], RawData]

SOURCES: dict[str, Reader] = {
    "idx": idx.read,
    "image_folder": image_folder.read,
    "arrays": arrays.read,
    "table": table.read,
}

__all__ = ["SOURCES", "DataError", "RawData", "Reader", "SourceOptions", "read"]


def read(name: str, path: Path | str, options: SourceOptions | None = None) -> RawData:
    """Read `path` with the source called `name`; options default to SourceOptions()."""
    try:
        reader = SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown data source {name!r}; choose one of {sorted(SOURCES)}") from None
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: does not exist (data.path for the {name} source)")
    return reader(path, options if options is not None else SourceOptions())
