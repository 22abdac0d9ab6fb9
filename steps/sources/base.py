"""What every data source returns, the options it reads, and the checks they share.

A reader turns files into `RawData`: uint8 images (N, C, H, W) or float32
features (N, D), int64 labels 0..K-1, the class names, and every file it read
(for the data hash). `RawData` checks that contract when it is built, so a
reader cannot hand the data stage something malformed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

Kind = Literal["image", "features"]
Split = tuple[np.ndarray, np.ndarray]

# Pillow's bilinear resize widens its triangle filter by the scale factor when
# shrinking, so it antialiases downscaling as well (no need for BOX there).
RESAMPLE = Image.Resampling.BILINEAR
CHANNELS = {"grayscale": 1, "rgb": 3}
_PIL_MODE = {1: "L", 3: "RGB"}


class DataError(ValueError):
    """Input data is missing, corrupt or malformed; the message names the file, column or value."""


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source; each field is `data.<field>` in params.yaml.

    image_size: resize every image to image_size x image_size (image sources only).
    channels: None keeps what the data has; "grayscale" or "rgb" converts every image.
    label_column / feature_columns: the table source's columns (feature_columns None = all others).
    class_names: names for labels 0..K-1 of sources whose labels are bare integers (idx, arrays).
    test_fraction / seed: the seeded stratified test split, used only when a source has no test split.
    """

    image_size: int | None = None
    channels: Literal["grayscale", "rgb"] | None = None
    label_column: str | None = None
    feature_columns: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = None
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
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be strictly between 0 and 1, got {self.test_fraction!r}")


# eq=False: comparing numpy arrays field by field has no single truth value.
@dataclass(frozen=True, eq=False)
class RawData:
    """A source's data before the data stage splits off validation rows and normalises.

    kind "image": train/test x are uint8 (N, C, H, W) with C 1 or 3; feature_names is empty.
    kind "features": x are float32 (N, D), all finite; feature_names has D names.
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
        if self.kind not in ("image", "features"):
            raise ValueError(f"{where}: kind must be 'image' or 'features', got {self.kind!r}")
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
            elif x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != width:
                raise DataError(f"{where} ({part}): features must be float32 (N, {width}), got {x.dtype} {x.shape}")
        if self.train[0].shape[1:] != self.test[0].shape[1:]:
            raise DataError(
                f"{where}: train samples are {self.train[0].shape[1:]}, test samples {self.test[0].shape[1:]}"
            )
        if self.kind == "image" and self.feature_names:
            raise ValueError(f"{where}: images have no feature names")
        missing = sorted(set(range(len(self.class_names))) - set(np.unique(self.train[1]).tolist()))
        if missing:
            names = [self.class_names[i] for i in missing]
            raise DataError(f"{where}: class(es) {names} have no training rows; a model could never learn them")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


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


def encode_labels(
    parts: Sequence[np.ndarray], where: Sequence[str], *, allow_text: bool
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Map label values to 0..K-1 in sorted order, one mapping for all parts; names are str(value).

    Integers sort numerically (2 before 10), text by Python string order. Floats
    count as integers only when they have no fractional part. `allow_text`
    admits strings and booleans (tables); arrays take integers only. Values of
    later parts (the test split) must all occur in the first (training).
    """
    values = []
    for labels, name in zip(parts, where, strict=True):
        values.append(_label_values(labels, name, allow_text))
    kinds = {_value_kind(v) for v in values}
    if len(kinds) > 1:
        raise DataError(f"{' and '.join(where)}: labels mix types ({', '.join(sorted(kinds))})")
    classes = np.unique(values[0])
    for labels, name in zip(values[1:], where[1:], strict=True):
        unseen = np.setdiff1d(np.unique(labels), classes)
        if len(unseen):
            raise DataError(
                f"{name}: label(s) {list(_names(unseen[:5]))} do not occur in the training data ({where[0]})"
            )
    codes = [np.searchsorted(classes, v).astype(np.int64) for v in values]
    return codes, _names(classes)


def _label_values(labels: np.ndarray, where: str, allow_text: bool) -> np.ndarray:
    if labels.ndim != 1:
        hint = " (one-hot? store the class index instead)" if labels.ndim == 2 else ""
        raise DataError(f"{where}: labels must be 1-D, got shape {labels.shape}{hint}")
    if len(labels) == 0:
        raise DataError(f"{where}: no rows")
    kind = labels.dtype.kind
    if kind in "iu":
        return labels.astype(np.int64)
    if kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            first = labels[np.argmax(bad)].item()
            raise DataError(f"{where}: labels must be integers; {int(bad.sum())} are not (e.g. {first!r})")
        return labels.astype(np.int64)
    if allow_text and kind == "b":
        return labels.astype(bool)
    if allow_text and kind in "UO":
        not_text = [v for v in labels if not isinstance(v, str)]
        if not_text:
            raise DataError(f"{where}: labels must be all strings or all integers; found {not_text[0]!r} among strings")
        return labels.astype(str)
    allowed = "integers, strings or booleans" if allow_text else "integers"
    raise DataError(f"{where}: labels must be {allowed}, got dtype {labels.dtype}")


def _value_kind(values: np.ndarray) -> str:
    return {"i": "integers", "b": "booleans", "U": "strings"}[values.dtype.kind]


def _names(values: np.ndarray) -> tuple[str, ...]:
    return tuple(str(v) for v in values.tolist())


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int, class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified (keep_idx, held_idx), both sorted; the same inputs always give the same split.

    Each class holds out round(n * fraction) of its n rows (Python's round: ties
    to even), but at least 1 and at most n - 1, so every class appears on both
    sides; a class with fewer than 2 rows is refused by name. One generator
    seeded with `seed` permutes the classes' rows in label order.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be strictly between 0 and 1, got {fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) < 2:
            name = class_names[int(label)] if class_names is not None else str(label)
            raise DataError(
                f"class {name!r} has {len(rows)} row(s); a stratified split of {fraction * 100:g}% needs at least 2"
            )
        n_held = min(max(round(len(rows) * fraction), 1), len(rows) - 1)
        rows = rng.permutation(rows)
        held.append(rows[:n_held])
        keep.append(rows[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def split_off_test(
    x: np.ndarray, y: np.ndarray, options: SourceOptions, class_names: Sequence[str]
) -> tuple[Split, Split]:
    """(train, test) for a source without a test split: `options.test_fraction`, seeded by `options.seed`."""
    keep, held = stratified_split(y, options.test_fraction, options.seed, class_names)
    return (x[keep], y[keep]), (x[held], y[held])


def name_classes(default: tuple[str, ...], options: SourceOptions, where: str) -> tuple[str, ...]:
    """`options.class_names` when given (one per class), else the source's own names."""
    if options.class_names is None:
        return default
    if len(options.class_names) != len(default):
        raise DataError(
            f"{where}: class_names lists {len(options.class_names)} names but the data has {len(default)} classes"
        )
    return options.class_names


def refuse_options(options: SourceOptions, source: str, fields: Sequence[str]) -> None:
    """Refuse options that mean nothing to this source, rather than silently ignoring them."""
    given = [name for name in fields if getattr(options, name) is not None]
    if given:
        raise ValueError(f"the {source} source does not use {', '.join(given)}; remove it from params.yaml")


def conform_image(image: Image.Image, channels: int, size: int | None) -> np.ndarray:
    """One PIL image as a (C, H, W) uint8 array with `channels` channels, resized to size x size if given.

    Conversions are Pillow's: RGB -> L is ITU-R 601-2 luma; alpha is dropped,
    not composited (as torchvision's loader does); palettes are expanded.
    """
    mode = _PIL_MODE[channels]
    if image.mode != mode:
        image = image.convert(mode)
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def conform_images(images: np.ndarray, options: SourceOptions) -> np.ndarray:
    """uint8 (N, C, H, W) images converted to `options.channels` and resized to `options.image_size`."""
    channels = CHANNELS[options.channels] if options.channels else images.shape[1]
    size = options.image_size
    if channels == images.shape[1] and (size is None or images.shape[2:] == (size, size)):
        return images
    out_size = images.shape[2:] if size is None else (size, size)
    out = np.empty((len(images), channels, *out_size), dtype=np.uint8)
    for i, image in enumerate(images):
        pixels = image[0] if images.shape[1] == 1 else image.transpose(1, 2, 0)
        out[i] = conform_image(Image.fromarray(np.ascontiguousarray(pixels)), channels, size)
    return out
