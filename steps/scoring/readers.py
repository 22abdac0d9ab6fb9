"""Raw inputs as batches for `shrinkflow predict`, never all in memory: (ids, the model's input, unreadable rows).

    INPUT                           id                          what the model gets
    a folder (searched recursively) the file's path in INPUT    uint8 (N, H, W) or (N, H, W, C) images
    *-idx3-ubyte[.gz]               the row index               the same (IDX images are 8-bit gray)
    .npz (one array, or x|images|features)  the row index       images as above, or the feature table
    .parquet / .pq / .csv / .jsonl  the row index or --id-column  a float32 DataFrame of the feature columns,
                                                                or (a text model) the text column's strings

Images are made what the model takes as the data stage made them (steps/sources/images.py: Pillow's
channel conversion, bilinear resize to the contract's `resize`); a model trained without resizing takes
only its own size, and another size is that file's error. Table columns other than the features or the
text column (and the id column) are left out; a missing one is refused before anything is read.

A folder and a table are read a batch at a time (`ParquetFile.iter_batches`, CSV `chunksize`), an IDX file
a batch of bytes at a time; a .npz member is loaded whole (NumPy cannot read part of one), so data larger
than memory belongs in a folder, an IDX file or a table.

Unreadable rows (an undecodable image, a NaN or non-number in a feature column, an empty or missing text) are
returned with the
batch as (id, why), for the caller to skip or refuse; a problem of the whole input (missing, empty, the
wrong kind for the model, a truncated file) raises DataError naming it.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from steps.serving.contract import Contract
from steps.serving.inputs import caller_rows, to_pil_layout
from steps.sources.arrays import TEST_SUFFIX, X_KEYS
from steps.sources.base import DataError
from steps.serving.pixels import DECODE_ERRORS, conform_image, unsupported_mode

if TYPE_CHECKING:
    import pandas as pd

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TABLE_EXTENSIONS = (".parquet", ".pq", ".csv", ".jsonl")
TABLE_KINDS = ("features", "text")
"""The contracts a table is scored for: named feature columns, or a text column."""
IDX_NAME = re.compile(r"-idx3-ubyte(\.gz)?$")
# Pillow's failures on a bad file (as steps/sources/image_folder.py): unknown format or truncated data
# (OSError), broken chunks (SyntaxError, ValueError), decompression bombs.
_IDX_ERRORS = (OSError, EOFError, zlib.error)

Id = Any  # a relative path (str), a row index (int), or an --id-column value


@dataclass(frozen=True, eq=False)
class Batch:
    """`ids[i]` names row i of `data` (None when no row of the batch could be read); `errors`: (id, why)."""

    ids: list[Id]
    data: np.ndarray | pd.DataFrame | None
    errors: list[tuple[Id, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.ids) + len(self.errors)


@dataclass(frozen=True, eq=False)
class Input:
    """An opened input: `batches` yields it once, in input order; `total` rows when known without reading."""

    path: Path
    what: str
    total: int | None
    batches: Iterator[Batch]


class Unreadable(ValueError):
    """One row or file cannot be read; the message says why (the caller adds its id)."""


def open_input(path: Path, contract: Contract, batch_size: int, id_column: str | None = None) -> Input:
    """The input at `path` as batches of at most `batch_size` rows; DataError when it cannot be scored at all."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if id_column is not None and not (path.is_file() and path.suffix.lower() in TABLE_EXTENSIONS):
        raise DataError(f"{path}: --id-column names a column of a table; images and arrays use their file "
                        "path or row index as the id")
    if path.is_dir():
        return _image_folder(path, contract, batch_size)
    if IDX_NAME.search(path.name):
        return _idx_file(path, contract, batch_size)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _npz_file(path, contract, batch_size)
    if suffix in (".parquet", ".pq"):
        return _parquet_table(path, contract, batch_size, id_column)
    if suffix == ".csv":
        return _csv_table(path, contract, batch_size, id_column)
    if suffix == ".jsonl":
        return _jsonl_table(path, contract, batch_size, id_column)
    raise DataError(f"{path}: cannot tell what it holds from its name; expected a folder of images, "
                    f"*-idx3-ubyte[.gz], .npz, or a table ({', '.join(TABLE_EXTENSIONS)})")


def _expect(contract: Contract, kind: str | tuple[str, ...], path: Path, what: str) -> None:
    if contract.kind not in ((kind,) if isinstance(kind, str) else kind):
        raise DataError(f"{path}: {what}, but the model takes {contract.describe()}")


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


# -- images -----------------------------------------------------------------------------------------------------

def _size_refused(width: int, height: int, contract: Contract) -> str:
    h, w = contract.size
    return (f"{width}x{height} pixels (width x height), but the model takes {w}x{h} and was trained without "
            "resizing (data.image_size unset), so it resizes nothing")


def conform(image: Image.Image, contract: Contract) -> np.ndarray:
    """One decoded image as uint8 (C, H, W) of the contract's channels and size; Unreadable when it cannot be."""
    if unsupported_mode(image.mode):
        raise Unreadable(unsupported_mode(image.mode))
    if image.size != contract.size[::-1] and contract.resize is None:
        raise Unreadable(_size_refused(*image.size, contract))
    pixels = conform_image(image, contract.channels, contract.resize)
    if pixels.shape[1:] != contract.size:
        raise Unreadable(f"resized to {pixels.shape[2]}x{pixels.shape[1]}, but the model takes "
                         f"{contract.size[1]}x{contract.size[0]}")
    return pixels


def decode_image(path: Path, contract: Contract) -> np.ndarray:
    """An image file as uint8 (C, H, W) the contract's way; Unreadable naming why not."""
    try:
        with Image.open(path) as image:
            return conform(image, contract)
    except DECODE_ERRORS as err:
        raise Unreadable(f"not a readable image ({err})") from None


def image_files(root: Path) -> Iterator[Path]:
    """Image files under `root`, recursively, in the order of their paths' sorted parts (a folder's entries,
    files and subfolders together, by name); hidden files and folders (".*") skipped."""
    with os.scandir(root) as scan:
        entries = sorted((e for e in scan if not e.name.startswith(".")), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            yield from image_files(Path(entry.path))
        elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            yield Path(entry.path)


def _image_folder(root: Path, contract: Contract, batch_size: int) -> Input:
    count = sum(1 for _ in image_files(root))
    if count == 0:
        raise DataError(f"{root}: no images ({'/'.join(IMAGE_EXTENSIONS)}) in this folder or its subfolders")
    _expect(contract, "image", root, f"a folder of {count} images")

    def batches() -> Iterator[Batch]:
        for paths in _chunks(image_files(root), batch_size):
            ids, images, errors = [], [], []
            for path in paths:
                key = path.relative_to(root).as_posix()
                try:
                    images.append(decode_image(path, contract))
                except Unreadable as err:
                    errors.append((key, str(err)))
                    continue
                ids.append(key)
            yield Batch(ids, caller_rows(np.stack(images), contract) if images else None, errors)

    return Input(root, f"a folder of {count} images", count, batches())


def conform_array(images: np.ndarray, contract: Contract, where: Path) -> np.ndarray:
    """uint8 (N, C, H, W) of one size, to the contract's channels and size; DataError when the size cannot be."""
    if images.shape[1:] == tuple(contract.input_shape):
        return images
    if images.shape[2:] != contract.size and contract.resize is None:
        raise DataError(f"{where}: images of {_size_refused(images.shape[3], images.shape[2], contract)}")
    out = np.empty((len(images), *contract.input_shape), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = conform(Image.fromarray(to_pil_layout(image)), contract)
    return out


# -- IDX ----------------------------------------------------------------------------------------------------------

def _open_idx(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _idx_shape(fh, path: Path) -> tuple[int, int, int]:
    magic = fh.read(4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if magic[2] != 0x08:
        raise DataError(f"{path}: IDX element type 0x{magic[2]:02x} is not unsigned byte (0x08)")
    if magic[3] != 3:
        raise DataError(f"{path}: IDX file of {magic[3]} dimensions; images are 3 (N, H, W)")
    dims = fh.read(12)
    if len(dims) < 12:
        raise DataError(f"{path}: truncated IDX header")
    return struct.unpack(">3I", dims)


def _idx_file(path: Path, contract: Contract, batch_size: int) -> Input:
    try:
        with _open_idx(path) as fh:
            count, height, width = _idx_shape(fh, path)
    except _IDX_ERRORS as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    if count == 0 or height == 0 or width == 0:
        raise DataError(f"{path}: no images (IDX shape {(count, height, width)})")
    what = f"an IDX file of {count} {width}x{height} images"
    _expect(contract, "image", path, what)
    if (height, width) != contract.size and contract.resize is None:
        raise DataError(f"{path}: images of {_size_refused(width, height, contract)}")
    per_image = height * width

    def batches() -> Iterator[Batch]:
        try:
            with _open_idx(path) as fh:
                _idx_shape(fh, path)
                for start in range(0, count, batch_size):
                    n = min(batch_size, count - start)
                    raw = fh.read(n * per_image)
                    if len(raw) < n * per_image:
                        raise DataError(f"{path}: ends after {start + len(raw) // per_image} of the {count} images "
                                        "its header promises (truncated?)")
                    images = np.frombuffer(raw, dtype=np.uint8).reshape(n, 1, height, width)
                    yield Batch(list(range(start, start + n)), caller_rows(conform_array(images, contract, path),
                                                                           contract))
        except _IDX_ERRORS as err:
            raise DataError(f"{path}: cannot read ({err})") from None

    return Input(path, what, count, batches())


# -- .npz ---------------------------------------------------------------------------------------------------------

def _npz_array(path: Path) -> tuple[str, np.ndarray]:
    """The array to score: the only one, or the only one of samples (x | images | features, or a test split's
    x_test...: with both, which one is meant is not clear); (None, the keys) when there is none such."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            named = [k for k in keys if k.removesuffix(TEST_SUFFIX) in X_KEYS]
            key = keys[0] if len(keys) == 1 else (named[0] if len(named) == 1 else None)
            return (key, npz[key]) if key is not None else (None, keys)
    except (OSError, ValueError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a readable .npz file of plain numbers ({err}); object arrays are "
                        "never unpickled") from None


def _pick_npz_array(path: Path) -> tuple[str, np.ndarray]:
    key, found = _npz_array(path)
    if key is None:
        raise DataError(f"{path}: holds the arrays {found}; give one array, or one named {' | '.join(X_KEYS)}")
    return key, found


def _npz_features(x: np.ndarray, contract: Contract, where: str) -> tuple[np.ndarray, dict[int, str]]:
    if x.ndim != 2 or x.shape[1] != len(contract.feature_names):
        raise DataError(f"{where}: shape {x.shape}, but the model takes {contract.describe()}: (N, "
                        f"{len(contract.feature_names)}) features, column i named feature_names[i]")
    values = x.astype(np.float32)
    finite = np.isfinite(values)
    errors = {}
    for row in np.flatnonzero(~finite.all(axis=1)):
        columns = [contract.feature_names[j] for j in np.flatnonzero(~finite[row])]
        errors[int(row)] = f"NaN or infinite value in column(s) {columns}"
    return values, errors


def _npz_images(x: np.ndarray, contract: Contract, where: str) -> tuple[np.ndarray, dict[int, str]]:
    """uint8 (N, C, H, W) by the arrays source's rules (steps/sources/arrays.py): floats all in [0, 1] are
    scaled by 255 as the data stage scaled them; other values must be pixel values 0..255, row by row."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4 or x.shape[1] not in (1, 3):
        hint = "; it looks channels-last (N, H, W, C): transpose it" if x.ndim == 4 and x.shape[3] in (1, 3) else ""
        raise DataError(f"{where}: images must be (N, H, W) or (N, C, H, W) with C 1 or 3, got shape {x.shape}{hint}")
    if x.dtype == np.uint8:
        return x, {}
    flat = x.reshape(len(x), -1).astype(np.float64)
    finite = np.isfinite(flat).all(axis=1)
    if finite.any() and x.dtype.kind == "f" and 0.0 <= flat[finite].min() and flat[finite].max() <= 1.0:
        flat = flat * 255.0
    with np.errstate(invalid="ignore"):
        in_range = finite & (flat >= 0).all(axis=1) & (flat <= 255).all(axis=1)
    errors = {int(i): "NaN or infinite pixel values" if not finite[i] else "pixel values outside 0..255"
              for i in np.flatnonzero(~in_range)}
    pixels = np.where(in_range[:, None], np.rint(np.nan_to_num(flat)), 0).astype(np.uint8)
    return pixels.reshape(x.shape), errors


def _npz_file(path: Path, contract: Contract, batch_size: int) -> Input:
    key, x = _pick_npz_array(path)
    where = f"{path}[{key}]"
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{where}: no rows (shape {x.shape})")
    if x.dtype.kind not in "iuf":
        raise DataError(f"{where}: rows must be numbers, got dtype {x.dtype}")
    if contract.images:
        if x.ndim == 2:
            raise DataError(f"{where}: (N, D) features, but the model takes {contract.describe()}")
        x, errors = _npz_images(x, contract, where)
        x = conform_array(x, contract, Path(where))
    else:
        x, errors = _npz_features(x, contract, where)

    def batches() -> Iterator[Batch]:
        for start in range(0, len(x), batch_size):
            rows = [i for i in range(start, min(start + batch_size, len(x))) if i not in errors]
            data = caller_rows(x[rows], contract) if rows else None
            failed = [(i, errors[i]) for i in range(start, min(start + batch_size, len(x))) if i in errors]
            yield Batch(rows, data, failed)

    return Input(path, f"{where} of {len(x)} rows", len(x), batches())


# -- tables -------------------------------------------------------------------------------------------------------

def model_columns(contract: Contract) -> list[str]:
    """The columns a table gives the model: its features, or its text column."""
    return [contract.text_column] if contract.texts else list(contract.feature_names)


def _check_columns(columns: list[str], contract: Contract, id_column: str | None, path: Path) -> list[str]:
    """The columns to read: the features or the text column (all present, none doubled), then the id column."""
    doubled = sorted({c for c in columns if columns.count(c) > 1})
    if doubled:
        raise DataError(f"{path}: column name(s) {doubled} appear more than once")
    wanted, what = model_columns(contract), "text" if contract.texts else "feature"
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataError(f"{path}: no {what} column(s) {missing}; the model takes {wanted}, the file has {columns}")
    if id_column is not None and id_column not in columns:
        raise DataError(f"{path}: no id column {id_column!r} (--id-column); the file has {columns}")
    if id_column in wanted:
        raise DataError(f"{path}: --id-column {id_column!r} is one of the model's {what} columns")
    return [*wanted, *([id_column] if id_column else [])]


def _read_or_refuse(chunks: Iterator, path: Path, errors: tuple[type[BaseException], ...]) -> Iterator:
    """`chunks`, with a failure to read the next one raised as DataError naming `path` (a failure of the code
    consuming a chunk is not caught here)."""
    read = 0
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except errors as err:
            raise DataError(f"{path}: cannot read past row {read} ({err})") from None
        read += len(chunk)
        yield chunk


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, mask of cells that hold something other than a number): a CSV chunk reads a column with
    one stray word as text, and only that cell is wrong."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_complex_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(column), bool)
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return numbers, np.isnan(numbers) & column.notna().to_numpy()


def table_batch(frame: pd.DataFrame, start: int, contract: Contract, id_column: str | None) -> Batch:
    """Rows of a table as float32 features; a row with a NaN, an infinity or a non-number is an error naming
    the column (and the row, when ids come from --id-column). A text model's rows: the text column's strings;
    a missing, non-string or blank text is the row's error."""
    import pandas as pd

    if contract.texts:
        return _rows_batch(frame, start, id_column, _text_problems(frame[contract.text_column]),
                           lambda keep: pd.DataFrame({contract.text_column: frame[contract.text_column]
                                                      .iloc[keep].tolist()}))
    features = list(contract.feature_names)
    values = np.empty((len(frame), len(features)), dtype=np.float64)
    problems: dict[int, list[str]] = {}
    for j, column in enumerate(features):
        values[:, j], not_numbers = _numbers(frame[column])
        for i in np.flatnonzero(not_numbers):
            problems.setdefault(int(i), []).append(f"column {column!r}: {frame[column].iloc[i]!r} is not a number")
        for i in np.flatnonzero(~np.isfinite(values[:, j]) & ~not_numbers):
            what = "empty (NaN)" if np.isnan(values[i, j]) else values[i, j]
            problems.setdefault(int(i), []).append(f"column {column!r} is {what}")
    return _rows_batch(frame, start, id_column, problems,
                       lambda keep: pd.DataFrame(values[keep].astype(np.float32), columns=features))


def _text_problems(column: pd.Series) -> dict[int, list[str]]:
    """{row in the chunk: why} for texts the served model would refuse: missing, not a string, or blank."""
    from steps.serving.texts import BLANK, MISSING, problem_of  # pandas: loaded when a table is read, not before

    problems = {}
    for i, text in enumerate(column.tolist()):
        problem = problem_of(text)
        if problem == BLANK:
            problems[i] = [f"column {column.name!r} is blank (only whitespace)"]
        elif problem is not None:
            what = "empty" if problem == MISSING else problem
            problems[i] = [f"column {column.name!r} is {what}, not a text"]
    return problems


def _rows_batch(frame: pd.DataFrame, start: int, id_column: str | None, problems: dict[int, list[str]],
                rows_of) -> Batch:
    """The batch of `frame`'s rows without `problems` (`rows_of(kept positions)` makes the model's input), and
    the others as errors named by their id (and row, when ids come from --id-column)."""
    import pandas as pd

    rows = range(start, start + len(frame))
    ids = frame[id_column].tolist() if id_column else list(rows)
    if id_column:
        for i in np.flatnonzero(frame[id_column].isna().to_numpy()):
            problems.setdefault(int(i), []).append(f"no id in column {id_column!r}")
    errors = [(ids[i] if id_column and not pd.isna(ids[i]) else rows[i],
               (f"row {rows[i]}: " if id_column else "") + "; ".join(why)) for i, why in sorted(problems.items())]
    keep = [i for i in range(len(frame)) if i not in problems]
    return Batch([ids[i] for i in keep], rows_of(keep) if keep else None, errors)


def _parquet_table(path: Path, contract: Contract, batch_size: int, id_column: str | None) -> Input:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{path}: not a readable Parquet file ({err})") from None
    _expect(contract, TABLE_KINDS, path, "a table")
    columns = _check_columns(table.schema_arrow.names, contract, id_column, path)
    schema = table.schema_arrow
    if contract.texts:
        kind = schema.field(contract.text_column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            raise DataError(f"{path}: text column {contract.text_column!r} holds {kind}, not strings")
    refused = [f"{c!r} ({schema.field(c).type})" for c in contract.feature_names
               if not (pa.types.is_integer(schema.field(c).type) or pa.types.is_floating(schema.field(c).type)
                       or pa.types.is_boolean(schema.field(c).type) or pa.types.is_null(schema.field(c).type))]
    if refused:
        raise DataError(f"{path}: feature column(s) {', '.join(refused)} are not numeric")
    count = table.metadata.num_rows
    if count == 0:
        raise DataError(f"{path}: no rows")

    def batches() -> Iterator[Batch]:
        start = 0
        for record_batch in _read_or_refuse(table.iter_batches(batch_size=batch_size, columns=columns), path,
                                            (OSError, pa.ArrowException)):
            yield table_batch(record_batch.to_pandas(), start, contract, id_column)
            start += record_batch.num_rows

    return Input(path, f"a Parquet table of {count} rows", count, batches())


def _csv_table(path: Path, contract: Contract, batch_size: int, id_column: str | None) -> Input:
    import pandas as pd

    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty (no header, no rows)") from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from None
    _expect(contract, TABLE_KINDS, path, "a table")
    columns = _check_columns(header, contract, id_column, path)
    # ids stay text, as written: "007" is not 7, and one chunk's ids must not be read as numbers, another's as
    # text; so do texts ("42" is a text), and an empty cell stays missing (NaN), which the text check refuses
    as_text = ([id_column] if id_column else []) + ([contract.text_column] if contract.texts else [])
    # a message reading "NA", "null" or "None" is a text, as the data stage read it (steps/sources/text.py);
    # only an empty cell is missing
    missing = {"keep_default_na": False, "na_values": {contract.text_column: [""]}} if contract.texts else {}
    chunks = pd.read_csv(path, usecols=columns, chunksize=batch_size, dtype=dict.fromkeys(as_text, str) or None,
                         **missing)
    try:
        first = next(chunks, None)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from None
    if first is None or first.empty:
        raise DataError(f"{path}: no rows (a header only)")

    def batches() -> Iterator[Batch]:
        start = 0
        # pandas' ParserError (a malformed line, named by number) is a ValueError
        for frame in itertools.chain([first], _read_or_refuse(chunks, path, (ValueError, UnicodeDecodeError))):
            yield table_batch(frame, start, contract, id_column)
            start += len(frame)

    return Input(path, "a CSV table", None, batches())


def _jsonl_table(path: Path, contract: Contract, batch_size: int, id_column: str | None) -> Input:
    """JSON Lines, one object per line: a batch of lines at a time; the first line's keys are the columns."""
    import json

    import pandas as pd

    _expect(contract, TABLE_KINDS, path, "a table")
    try:
        with open(path, encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), None)
        header = list(json.loads(first)) if first is not None else None
    except (OSError, ValueError, UnicodeDecodeError, TypeError) as err:
        raise DataError(f"{path}: not a readable JSON Lines file ({err})") from None
    if header is None:
        raise DataError(f"{path}: no rows")
    columns = _check_columns(header, contract, id_column, path)
    # dtype=False: texts and ids stay as written ("007" is not 7)
    chunks = pd.read_json(path, lines=True, chunksize=batch_size, dtype=False, encoding="utf-8")

    def batches() -> Iterator[Batch]:
        start = 0
        for frame in _read_or_refuse(iter(chunks), path, (ValueError, UnicodeDecodeError)):
            missing = [c for c in columns if c not in frame.columns]
            for c in missing:  # a key absent from every line of this chunk: missing values, each row's error
                frame[c] = None
            yield table_batch(frame[columns], start, contract, id_column)
            start += len(frame)

    return Input(path, "a JSON Lines table", None, batches())
