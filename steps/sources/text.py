"""Text source: labelled texts, tokenised by the data stage after its split (steps/sources/tokens.py).

Layouts:

    a table of texts     a .csv, .parquet/.pq or .jsonl (JSON Lines) file, or a folder of them (read in
                         sorted name order, concatenated; subfolders and hidden files ignored):
                         `data.text_column` holds the texts, `data.label_column` the labels
    class folders        root/<class>/**/*.txt, or root/train/<class>/... + root/test/<class>/... (the
                         given test split, kept as it is); one text per file, classes named after their
                         folders in Python's sorted order, as image_folder names them

Files must be UTF-8 (a byte-order mark is dropped); other bytes are refused naming the file, the byte
offset and its line. Every text must hold more than whitespace: a blank one is refused naming the file,
its row (data rows counted from 1 after a CSV's header; lines of a JSON Lines file; Parquet rows from
1) and the column. Texts are kept as written (not stripped); the tokenizer normalises.

Labels, in a table: strings (classes named by their values, in sorted order), integers (sorted
numerically, named str(value)), or integers that are class indices 0..K-1 named by `data.class_names`
or by a classes.txt beside the file (in the folder), line i naming label i. A CSV's labels are integers
when every one is written as one. A table has no test split: a seeded stratified `test_fraction` is
held out, and so is one for class folders without train/ and test/.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from steps.sources import tokens
from steps.sources.base import DataError, RawData, SourceOptions, check_labels, refuse_options
from steps.sources.folders import class_layout, visible
from steps.sources.labels import CLASSES_FILE, encode_labels, read_class_names, split_off_test

TABLES = (".csv", ".parquet", ".pq", ".jsonl")
TEXT_FILES = ".txt"
TABLE_ONLY = ("text_column", "label_column", "class_names")
"""The options only a table of texts reads: class folders name their classes."""
INTEGER = re.compile(r"[+-]?\d+")

Column = tuple[list[Any], list[str]]
"""A column's values and where each one is ("file: row 3"), for errors."""


def decode(raw: bytes, path: Path) -> str:
    """`raw` as UTF-8 text without a byte-order mark; DataError naming the file, byte offset and line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}: byte offset {err.start} (line {line}) is not UTF-8 ({err.reason}); "
                        "save the file as UTF-8") from None
    return text.removeprefix("\ufeff")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err})") from None


# --- a table of texts ---------------------------------------------------------------------------------------


def _csv(path: Path, columns: tuple[str, ...]) -> tuple[Column, ...]:
    import pandas as pd

    text = decode(_read_bytes(path), path)
    try:  # every cell as written: no "NA" read as missing, no guessing at numbers (labels are judged below)
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from None
    _has_columns(path, [str(c) for c in frame.columns], columns)
    where = [f"{path}: row {i + 1}" for i in range(len(frame))]
    texts = (frame[columns[0]].tolist(), where)
    if len(columns) == 1:
        return (texts,)
    labels = frame[columns[1]].tolist()
    if labels and all(INTEGER.fullmatch(v.strip()) for v in labels):
        labels = [int(v) for v in labels]
    return texts, (labels, where)


def _parquet(path: Path, columns: tuple[str, ...]) -> tuple[Column, ...]:
    import pandas as pd
    import pyarrow as pa

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise DataError(f"{path}: not a readable Parquet file ({err})") from None
    _has_columns(path, [str(c) for c in frame.columns], columns)
    where = [f"{path}: row {i + 1}" for i in range(len(frame))]
    texts = [_bytes_as_text(v, f"{w}, column {columns[0]!r}") for v, w in zip(frame[columns[0]].tolist(), where,
                                                                             strict=True)]
    return (texts, where), *((frame[column].tolist(), where) for column in columns[1:])


def _bytes_as_text(value: Any, where: str) -> Any:
    """A Parquet binary cell as text, refused with its row when it is not UTF-8."""
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: byte offset {err.start} of the value is not UTF-8 ({err.reason})") from None


def _jsonl(path: Path, columns: tuple[str, ...]) -> tuple[Column, ...]:
    rows, where = [], []
    for number, line in enumerate(decode(_read_bytes(path), path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {number} is not JSON ({err})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} is a {type(row).__name__}, not an object of named fields")
        for column in columns:
            if column not in row:
                raise DataError(f"{path}: line {number} has no {column!r} field; fields present: {sorted(row)}")
        rows.append(row)
        where.append(f"{path}: line {number}")
    if not rows:
        raise DataError(f"{path}: no rows")
    return tuple(([r[column] for r in rows], where) for column in columns)


READERS = {".csv": _csv, ".parquet": _parquet, ".pq": _parquet, ".jsonl": _jsonl}
"""suffix -> (file, (text column[, label column])) -> those columns; a table of documents (steps/sources/documents.py)
asks for the text column alone."""


def _has_columns(path: Path, present: list[str], wanted: tuple[str, ...]) -> None:
    for key, column in zip(("text_column", "label_column"), wanted, strict=False):  # documents have no labels
        if column not in present:
            raise DataError(f"{path}: no {column!r} column (data.{key}); columns present: {present}")
    if not present or len(present) != len(set(present)):
        raise DataError(f"{path}: column names must be unique, got {present}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _texts(column: Column, name: str) -> np.ndarray:
    values, where = column
    for value, at in zip(values, where, strict=True):
        if _missing(value):
            raise DataError(f"{at}, column {name!r}: missing text")
        if not isinstance(value, str):
            raise DataError(f"{at}, column {name!r}: {value!r} is a {type(value).__name__}, not text")
        if not value.strip():
            raise DataError(f"{at}, column {name!r}: {'empty' if not value else 'whitespace-only'} text")
    return np.array(values, dtype=object)


def _label_values(column: Column, name: str) -> np.ndarray:
    """The labels as one numpy array of their kind (integers, floats, booleans, strings); mixtures are left
    for labels.encode_labels to refuse."""
    values, where = column
    for value, at in zip(values, where, strict=True):
        if _missing(value) or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{at}, column {name!r}: missing label")
    if all(isinstance(v, bool | np.bool_) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    return np.array(values, dtype=object)


def table_files(path: Path) -> list[Path]:
    """The table file itself, or a folder's table files in sorted name order."""
    if path.is_file():
        if path.suffix.lower() not in TABLES:
            raise DataError(f"{path}: not a table of texts (expected {', '.join(TABLES)}) nor a folder")
        return [path]
    return [p for p in visible(path) if p.is_file() and p.suffix.lower() in TABLES]


def _class_names(labels: np.ndarray, options: SourceOptions, names_file: Path | None, where: str):
    """(labels 0..K-1, class names): integer class indices named by class_names or classes.txt, else encoded."""
    if names_file is not None and options.class_names is not None:
        raise DataError(f"{names_file} and data.class_names both name the classes; keep one of them")
    named = names_file is not None or options.class_names is not None
    if named and labels.dtype.kind not in "iu":
        what = names_file if names_file is not None else "data.class_names"
        kind = "text" if labels.dtype.kind in "OU" else f"{labels.dtype} values"
        raise DataError(f"{where}: {what} names integer class indices, but the labels are {kind}; "
                        "labels that are not integers are named by their values (remove it)")
    if not named:
        (codes,), names = encode_labels([labels], [where], allow_text=True)
        return codes, names
    names = read_class_names(names_file, int(labels.max()) + 1) if names_file is not None else options.class_names
    return check_labels(labels, names, where), names


def _read_tables(path: Path, files: list[Path], options: SourceOptions) -> RawData:
    if options.text_column is None or options.label_column is None:
        raise ValueError(f"the text source reading a table ({path}) needs data.text_column and data.label_column")
    columns = (options.text_column, options.label_column)
    texts, labels, label_where = [], [], []
    for file in files:
        text_column, (values, where) = READERS[file.suffix.lower()](file, columns)
        texts.append(_texts(text_column, columns[0]))
        labels += values
        label_where += where
    folder = path if path.is_dir() else path.parent
    names_file = folder / CLASSES_FILE if (folder / CLASSES_FILE).is_file() else None
    where = f"{path}: column {columns[1]!r}"
    label_array = _label_values((labels, label_where), columns[1])
    y, names = _class_names(label_array, options, names_file, where)
    train, test = split_off_test(np.concatenate(texts), y, options, names)
    return RawData(kind="text", train=train, test=test, class_names=names,
                   raw_files=tuple(sorted([*files, *([names_file] if names_file else [])])),
                   name=path.stem if path.is_file() else path.resolve().name)


# --- class folders of .txt files ----------------------------------------------------------------------------


def _class_files(split_root: Path) -> dict[str, list[Path]]:
    """{class name: its .txt files, sorted} for the class folders directly under split_root."""
    entries = visible(split_root)
    stray = [p for p in entries if p.is_file() and p.suffix.lower() == TEXT_FILES]
    if stray:
        raise DataError(f"{stray[0]}: texts must be inside a class folder ({split_root}/<class>/*.txt)")
    classes = {}
    for folder in (p for p in entries if p.is_dir()):
        files = sorted(p for p in folder.rglob(f"*{TEXT_FILES}") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        if not files:
            raise DataError(f"{folder}: class folder has no {TEXT_FILES} files")
        classes[folder.name] = files
    if not classes:
        raise DataError(f"{split_root}: no table of texts ({', '.join(TABLES)}) and no class folders "
                        f"({split_root}/<class>/*.txt)")
    return classes


def _file_text(path: Path) -> str:
    text = decode(_read_bytes(path), path)
    if not text.strip():
        raise DataError(f"{path}: {'empty' if not text else 'whitespace-only'} text")
    return text


def _read_folders(root: Path, options: SourceOptions) -> RawData:
    given = [key for key in TABLE_ONLY if getattr(options, key) is not None]
    if given:
        raise ValueError(f"{root}: class folders of {TEXT_FILES} files name their classes; data.{given[0]} is for "
                         "a table of texts (remove it)")
    parts = class_layout(root, _class_files)
    class_names = tuple(sorted(next(iter(parts.values()))))
    arrays, every_file = {}, []
    for part, classes in parts.items():
        files = [f for name in class_names for f in classes[name]]
        labels = np.concatenate([np.full(len(classes[name]), i, dtype=np.int64) for i, name in enumerate(class_names)])
        arrays[part] = (np.array([_file_text(f) for f in files], dtype=object), labels)
        every_file += files
    if "all" in arrays:
        train, test = split_off_test(*arrays["all"], options, class_names)
    else:
        train, test = arrays["train"], arrays["test"]
    return RawData(kind="text", train=train, test=test, class_names=class_names,
                   raw_files=tuple(sorted(every_file)), name=root.resolve().name)


def read(path: Path, options: SourceOptions) -> RawData:
    """Labelled texts under `path` (a table of texts, a folder of tables, or class folders) as text RawData."""
    refuse_options(options, "text")
    if options.tokenizer is None or options.max_length is None:
        raise ValueError("the text source needs data.tokenizer and data.max_length")
    if options.tokenizer.path is not None:
        tokens.tokenizer_file(Path(options.tokenizer.path))  # a bad tokenizer path is refused before any reading
    files = table_files(path)
    return _read_tables(path, files, options) if files else _read_folders(path, options)
