"""The contract of every data source: what it returns (`RawData`), the options it reads, its error.

A reader turns files into `RawData`: uint8 images (N, C, H, W), float32
features (N, D) or texts (N,) (tokenised after the data stage's split, by
steps/sources/tokens.py), int64 labels 0..K-1, the class names, and every
file it read (for the data hash). `RawData` checks that contract when it is built, so a
reader cannot hand the data stage something malformed. What readers share
beyond the contract: labels.py (label encoding, splits), images.py (conversion).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from steps.sources import OPTIONS, READS, refusal

Kind = Literal["image", "features", "text"]
KINDS = ("image", "features", "text")
Split = tuple[np.ndarray, np.ndarray]

CHANNELS = {"grayscale": 1, "rgb": 3}


class DataError(ValueError):
    """Input data is missing, corrupt or malformed; the message names the file, column or value."""


@dataclass(frozen=True)
class TokenizerOptions:
    """data.tokenizer: a saved tokenizer to load (`path`: a save_pretrained folder or a tokenizer.json), or one
    to train on the training split (`kind`, a name in steps.sources.TOKENIZERS, and `vocab_size`)."""

    path: str | None = None
    kind: str | None = None
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.kind is None):
            raise ValueError(f"data.tokenizer needs either path or train, got {self!r}")
        if self.kind is not None and (isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int)
                                      or self.vocab_size < 1):
            raise ValueError(f"data.tokenizer.train.vocab_size must be a positive integer, got {self.vocab_size!r}")


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source; each field is `data.<field>` in params.yaml.

    image_size, channels, label_column, feature_columns, class_names, text_column, max_length, tokenizer: what
    each does and which sources read it is `steps.sources.OPTIONS` and `READS` (None: not set; channels None keeps
    what the data has).
    test_fraction / seed: the seeded stratified test split, used only when a source has no test split.
    """

    image_size: int | None = None
    channels: Literal["grayscale", "rgb"] | None = None
    label_column: str | None = None
    feature_columns: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = None
    text_column: str | None = None
    max_length: int | None = None
    tokenizer: TokenizerOptions | None = None
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        # Lists from YAML become tuples so the options stay immutable and hashable.
        for name in ("feature_columns", "class_names"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, str) or not all(isinstance(item, str) for item in value):
                    raise ValueError(f"{name} must be a list of strings, got {value!r}")
                object.__setattr__(self, name, tuple(value))
        if self.image_size is not None and (isinstance(self.image_size, bool) or self.image_size < 1):
            raise ValueError(f"image_size must be a positive integer or None, got {self.image_size!r}")
        if self.channels is not None and self.channels not in CHANNELS:
            raise ValueError(f"channels must be one of {sorted(CHANNELS)} or None, got {self.channels!r}")
        if self.max_length is not None and (isinstance(self.max_length, bool) or self.max_length < 1):
            raise ValueError(f"max_length must be a positive integer or None, got {self.max_length!r}")
        if self.tokenizer is not None and not isinstance(self.tokenizer, TokenizerOptions):
            raise ValueError(f"tokenizer must be a TokenizerOptions or None, got {self.tokenizer!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be strictly between 0 and 1, got {self.test_fraction!r}")


# eq=False: comparing numpy arrays field by field has no single truth value.
@dataclass(frozen=True, eq=False)
class Encoded:
    """Split samples turned into the arrays the data stage writes (steps.sources.ENCODERS: texts into tokens).

    arrays: {split: {array name: array}}, each split's arrays in the order they are written, labels included.
    input_shape: one sample's shape. files: {name: bytes} written beside the splits (a tokenizer.json).
    manifest: the manifest's fields this encoding adds (steps.core.results.DataResult).
    """

    arrays: dict[str, dict[str, np.ndarray]]
    input_shape: tuple[int, ...]
    files: dict[str, bytes]
    manifest: dict


@dataclass(frozen=True, eq=False)
class RawData:
    """A source's data before the data stage splits off validation rows and normalises.

    kind "image": train/test x are uint8 (N, C, H, W) with C 1 or 3; feature_names is empty.
    kind "features": x are float32 (N, D), all finite; feature_names has D names.
    kind "text": x are object arrays (N,) of str, none empty or whitespace only; feature_names is empty.
    Labels are int64 0..K-1 with K = len(class_names); every class has training rows.
    raw_files lists every input file read, sorted; name is the dataset's name.
    """

    kind: Kind
    train: Split
    test: Split
    class_names: tuple[str, ...]
    raw_files: tuple[Path, ...]
    name: str
    feature_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = self.name or "<unnamed dataset>"
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {list(KINDS)}, got {self.kind!r}")
        if len(set(self.class_names)) != len(self.class_names) or not all(self.class_names):
            raise DataError(f"{where}: class names must be unique and non-empty, got {list(self.class_names)}")
        if len(self.class_names) < 2:
            raise DataError(f"{where}: needs at least 2 classes, found {list(self.class_names)}")
        if list(self.raw_files) != sorted(self.raw_files) or not self.raw_files:
            raise ValueError(f"{where}: raw_files must be a non-empty sorted tuple of paths")
        width = len(self.feature_names)
        for part, (x, y) in (("train", self.train), ("test", self.test)):
            check_labels(y, self.class_names, f"{where} ({part})")
            if len(x) != len(y):
                raise DataError(f"{where} ({part}): {len(x)} samples but {len(y)} labels")
            if self.kind == "image":
                if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
                    raise DataError(f"{where} ({part}): images must be uint8 (N, 1|3, H, W), got {x.dtype} {x.shape}")
            elif self.kind == "text":
                _check_texts(x, f"{where} ({part})")
            elif x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != width:
                raise DataError(f"{where} ({part}): features must be float32 (N, {width}), got {x.dtype} {x.shape}")
        if self.train[0].shape[1:] != self.test[0].shape[1:]:
            raise DataError(
                f"{where}: train samples are {self.train[0].shape[1:]}, test samples {self.test[0].shape[1:]}"
            )
        if self.kind != "features" and self.feature_names:
            raise ValueError(f"{where}: only features have feature names")
        missing = sorted(set(range(len(self.class_names))) - set(np.unique(self.train[1]).tolist()))
        if missing:
            names = [self.class_names[i] for i in missing]
            raise DataError(f"{where}: class(es) {names} have no training rows; a model could never learn them")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _check_texts(x: np.ndarray, where: str) -> None:
    """Texts are a 1-D object array of non-blank str (the readers name the file and row of a blank one)."""
    if x.dtype != object or x.ndim != 1:
        raise DataError(f"{where}: texts must be an object array (N,) of str, got {x.dtype} {x.shape}")
    for i, text in enumerate(x):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: text {i} is {'empty' if isinstance(text, str) else type(text).__name__}")


def check_labels(labels: np.ndarray, class_names: Sequence[str], where: str) -> np.ndarray:
    """Labels as int64, refused unless they are a non-empty 1-D integer array within 0..K-1."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 1:
        raise DataError(f"{where}: labels must be a 1-D array, got shape {getattr(labels, 'shape', None)}")
    if len(labels) == 0:
        raise DataError(f"{where}: no rows")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= len(class_names):
        bad = low if low < 0 else high
        raise DataError(f"{where}: label {bad} out of range 0..{len(class_names) - 1} ({len(class_names)} classes)")
    return labels.astype(np.int64, copy=False)


def refuse_options(options: SourceOptions, source: str, fields: Sequence[str] | None = None) -> None:
    """Refuse the options `source` does not read (`READS`; or `fields`, when what the data turn out to be
    rules more out) rather than silently ignoring them. The config refuses the same keys before any work
    (steps/config/data.py); this holds for callers of `read` that built their options by hand."""
    unread = fields if fields is not None else [key for key in OPTIONS if key not in READS[source]]
    given = [key for key in unread if getattr(options, key) is not None]
    if given:
        raise ValueError("; ".join(refusal(source, key) for key in given))
