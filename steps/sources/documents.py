"""Documents for a language model (`data.task: causal_lm` with `data.source: text`) and their split by document.

Layouts:

    .txt documents     a .txt file, or a folder of them (subfolders too, hidden files and folders left out, read
                       in sorted path order): one document per file, kept as written
    a table of texts   a .csv, .parquet/.pq or .jsonl file, or a folder of them (as the text source reads them):
                       one document per row of `data.text_column`

The text source's rules hold (steps/sources/text.py): UTF-8 only (a byte-order mark dropped), other bytes refused
naming the file, byte offset and line; an empty or whitespace-only document refused naming its file (and row).
Documents have no labels: data.label_column and data.class_names are refused by key.

The split is by document, so no document's text reaches two splits (a block of test tokens never continues a
training document): one generator seeded with data's seed permutes the documents; the first
round(N * data.test_fraction) of them (at least 1) are the test split, the next data.val_size the validation split,
the rest the training split. Each split keeps its documents in the order the source lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps.sources import UNLABELLED, text
from steps.sources.base import DataError, SourceOptions
from steps.sources.folders import visible

DOCUMENT_FILES = text.TEXT_FILES
SPLITS = ("train", "val", "test")


# eq=False: comparing numpy arrays field by field has no single truth value.
@dataclass(frozen=True, eq=False)
class Documents:
    """texts: object array (N,) of non-blank str, in the source's order; where: each one's file (and row), for
    errors and people; raw_files: every file read, sorted; name: the dataset's name."""

    texts: np.ndarray
    where: tuple[str, ...]
    raw_files: tuple[Path, ...]
    name: str

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, idx: np.ndarray) -> Documents:
        """The documents at `idx`, in that order."""
        return Documents(texts=self.texts[idx], where=tuple(self.where[i] for i in idx), raw_files=self.raw_files,
                         name=self.name)


def _document_files(root: Path) -> list[Path]:
    """root's .txt files at any depth, hidden ones (or in hidden folders) left out, in sorted path order."""
    found = []
    for entry in visible(root):
        if entry.is_dir():
            found += _document_files(entry)
        elif entry.is_file() and entry.suffix.lower() == DOCUMENT_FILES:
            found.append(entry)
    return sorted(found)


def _from_files(path: Path, files: list[Path], options: SourceOptions) -> Documents:
    if options.text_column is not None:
        raise ValueError(f"{path}: one document per {DOCUMENT_FILES} file; data.text_column is for a table of "
                         "documents (remove it)")
    return Documents(texts=np.array([text._file_text(f) for f in files], dtype=object),
                     where=tuple(str(f) for f in files), raw_files=tuple(files), name=_name(path))


def _from_tables(path: Path, files: list[Path], options: SourceOptions) -> Documents:
    if options.text_column is None:
        raise ValueError(f"the text source reading documents from a table ({path}) needs data.text_column")
    texts, where = [], []
    for file in files:
        (column,) = text.READERS[file.suffix.lower()](file, (options.text_column,))
        texts.append(text._texts(column, options.text_column))
        where += column[1]
    return Documents(texts=np.concatenate(texts), where=tuple(where), raw_files=tuple(files), name=_name(path))


def _name(path: Path) -> str:
    return path.stem if path.is_file() else path.resolve().name


def read(path: Path, options: SourceOptions) -> Documents:
    """The documents under `path` (.txt files, or a table's text column)."""
    given = [key for key in UNLABELLED if getattr(options, key) is not None]
    if given:
        raise ValueError(f"data.{given[0]}: data.task causal_lm reads documents, which have no labels and are "
                         "packed into data.block_size tokens (remove it)")
    if path.is_file() and path.suffix.lower() == DOCUMENT_FILES:
        return _from_files(path, [path], options)
    tables = text.table_files(path)
    files = _document_files(path) if path.is_dir() else []
    if tables and files:
        raise DataError(f"{path}: holds both tables ({tables[0].name}) and {DOCUMENT_FILES} documents "
                        f"({files[0].relative_to(path)}); keep one kind")
    if not tables and not files:
        raise DataError(f"{path}: no {DOCUMENT_FILES} documents and no table of texts ({', '.join(text.TABLES)})")
    return _from_tables(path, tables, options) if tables else _from_files(path, files, options)


def split(count: int, test_fraction: float, val_size: int, seed: int, train_limit: int | None = None,
          test_limit: int | None = None) -> dict[str, np.ndarray]:
    """{split: sorted indices of its documents} of `count` documents, seeded (see the module's docstring);
    train_limit and test_limit keep that many of a split's documents, a seeded sample."""
    order = np.random.default_rng(seed).permutation(count)
    n_test = min(max(round(count * test_fraction), 1), count - 1)
    if val_size >= count - n_test:
        raise DataError(f"data.val_size={val_size} leaves no training documents: {count} documents, {n_test} "
                        f"of them held out as test (data.test_fraction={test_fraction:g})")
    test, val, train = order[:n_test], order[n_test:n_test + val_size], order[n_test + val_size:]
    parts = {"train": train[:train_limit], "val": val, "test": test[:test_limit]}
    return {name: np.sort(parts[name]) for name in SPLITS}
