"""Table source: a Parquet (.parquet, .pq) or CSV (.csv) file, or a folder of them.

A folder's table files (not its subfolders, not hidden files) are read in
sorted name order and concatenated, so adding a file adds rows (and changes
the data hash); they must all have the same columns. Every row is a sample:
`data.label_column` (required) is the label, `data.feature_columns` the
features (default: every other column, in file order).

Features must be numeric (integers, floats, booleans as 0/1): text,
categorical and date columns are refused by name rather than encoded, since
an encoding fitted here would silently change the feature count whenever a
new category appears. NaN and infinite values are refused with their column
and count. Features are returned as float32, not standardised (the data
stage does that with training statistics). Labels are strings, integers
(floats only with no fractional part) or booleans, mapped to 0..K-1 in
sorted order and named str(value). A table has no test split: a seeded
stratified `test_fraction` is held out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from steps.sources.base import DataError, RawData, SourceOptions, refuse_options
from steps.sources.labels import encode_labels, split_off_test

if TYPE_CHECKING:
    import pandas as pd

# pandas and pyarrow are imported where they are used: the config schema imports
# the source registry for its names, and pandas alone would add about 0.2 s to that.
EXTENSIONS = (".parquet", ".pq", ".csv")


def table_files(path: Path) -> list[Path]:
    """The table file itself, or a folder's table files in sorted name order."""
    if path.is_file():
        if path.suffix.lower() not in EXTENSIONS:
            raise DataError(f"{path}: not a table file (expected {', '.join(EXTENSIONS)})")
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    files = sorted(
        p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTENSIONS
    )
    if not files:
        raise DataError(f"{path}: folder holds no {'/'.join(EXTENSIONS)} files")
    return files


def _read_one(path: Path) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise DataError(f"{path}: not a readable {path.suffix} table ({err})") from None
    doubled = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if doubled:
        raise DataError(f"{path}: column name(s) {doubled} appear more than once")
    return frame


def read_frame(files: list[Path]) -> pd.DataFrame:
    """All files as one frame, in the first file's column order; refuses files whose columns differ."""
    frames = [_read_one(path) for path in files]
    columns = list(frames[0].columns)
    for path, frame in zip(files[1:], frames[1:], strict=True):
        missing, extra = sorted(set(columns) - set(frame.columns)), sorted(set(frame.columns) - set(columns))
        if missing or extra:
            raise DataError(f"{path}: columns differ from {files[0].name}: missing {missing}, extra {extra}")
    if len(frames) == 1:
        return frames[0]
    import pandas as pd

    return pd.concat([frame[columns] for frame in frames], ignore_index=True)


def _columns(frame: pd.DataFrame, options: SourceOptions, where: str) -> tuple[str, list[str]]:
    label = options.label_column
    present = [str(c) for c in frame.columns]
    if label not in frame.columns:
        raise DataError(f"{where}: no label column {label!r}; columns present: {present}")
    if options.feature_columns is None:
        features = [c for c in frame.columns if c != label]
    else:
        features = list(options.feature_columns)
        absent = [c for c in features if c not in frame.columns]
        if absent:
            raise DataError(f"{where}: feature column(s) {absent} not found; columns present: {present}")
        if label in features:
            raise ValueError(f"data.feature_columns lists the label column {label!r}")
        if len(set(features)) != len(features):
            raise ValueError(f"data.feature_columns lists a column twice: {features}")
    if not features:
        raise DataError(f"{where}: no feature columns besides the label {label!r}")
    return label, features


def _features(frame: pd.DataFrame, columns: list[str], where: str) -> np.ndarray:
    import pandas as pd

    refused = [
        f"{c!r} ({frame[c].dtype})"
        for c in columns
        if not pd.api.types.is_numeric_dtype(frame[c].dtype) or pd.api.types.is_complex_dtype(frame[c].dtype)
    ]
    if refused:
        raise DataError(
            f"{where}: feature column(s) {', '.join(refused)} are not numeric; encode them as numbers, "
            "or leave them out with data.feature_columns"
        )
    x = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan).astype(np.float32)
    bad = (~np.isfinite(x)).sum(axis=0)
    if bad.any():
        counts = ", ".join(f"{c!r} ({n} rows)" for c, n in zip(columns, bad.tolist(), strict=True) if n)
        raise DataError(f"{where}: NaN, missing or infinite (after conversion to float32) values in {counts}")
    return x


def _labels(column: pd.Series, where: str) -> np.ndarray:
    import pandas as pd

    missing = int(column.isna().sum())
    if missing:
        raise DataError(f"{where}: {missing} missing value(s) in the label column")
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return column.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(dtype):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(dtype):
        return column.to_numpy(dtype=np.float64)
    return column.to_numpy(dtype=object)


def read(path: Path, options: SourceOptions) -> RawData:
    """A table file, or a folder of them, as feature RawData."""
    refuse_options(options, "table")
    if options.label_column is None:
        raise ValueError("the table source needs data.label_column (the column holding the labels)")
    files = table_files(path)
    frame = read_frame(files)
    where = str(path)
    label, columns = _columns(frame, options, where)
    x = _features(frame, columns, where)
    label_where = f"{where}: column {label!r}"
    (y,), names = encode_labels([_labels(frame[label], label_where)], [label_where], allow_text=True)
    train, test = split_off_test(x, y, options, names)
    return RawData(
        kind="features",
        train=train,
        test=test,
        class_names=names,
        raw_files=tuple(files),
        name=path.stem if path.is_file() else path.resolve().name,
        feature_names=tuple(str(c) for c in columns),
    )
