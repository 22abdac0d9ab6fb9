"""Labels and splits the readers share: label values to 0..K-1, class names from params or a classes.txt, the seeded
stratified split (also the data stage's validation split) and the test split of a source that has none."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from steps.sources.base import DataError, SourceOptions, Split

CLASSES_FILE = "classes.txt"
"""One class name per line, line i naming label i (the idx and text sources read it beside their files)."""


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


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` row indices (sorted; all rows when there are no more), each class's share proportional to its rows
    (largest remainders), every class at least one row when `n` allows; seeded."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = n * counts / len(labels)
    taken = np.floor(quota).astype(int)
    taken[np.argsort(taken - quota, kind="stable")[: n - taken.sum()]] += 1  # the largest remainders
    if n >= len(classes):  # every class keeps a row: the largest share gives one up for each class left out
        for short in np.flatnonzero(taken == 0):
            taken[np.argmax(taken)] -= 1
            taken[short] = 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == label))[:k] for label, k in zip(classes, taken, strict=True)]
    return np.sort(np.concatenate(chosen))


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


def read_class_names(path: Path, num_classes: int) -> tuple[str, ...]:
    """classes.txt: one name per line, line i naming label i; at least as many names as labels."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    names = tuple(line.strip() for line in lines)
    if "" in names:
        raise DataError(f"{path}: line {names.index('') + 1} is blank; every line must name one class")
    if len(set(names)) != len(names):
        doubled = sorted({name for name in names if names.count(name) > 1})
        raise DataError(f"{path}: class names repeated: {doubled}")
    if len(names) < num_classes:
        raise DataError(f"{path}: names {len(names)} classes but the labels go up to {num_classes - 1}")
    return names
