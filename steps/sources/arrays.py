"""Arrays source: a .npz file, or a folder of .npy files named like the .npz keys.

Keys (in the .npz, or file stems `<key>.npy` in the folder):
    samples: exactly one of x | images | features        labels: exactly one of y | labels
    test split (optional, both or neither): the same names with "_test" (x_test, labels_test...)
Any other key is refused (an `x_val` would otherwise be ignored silently); in a
folder, files other than .npy are ignored. Without a test split, a seeded
stratified `test_fraction` is held out.

Samples by shape: (N, H, W) -> images with 1 channel; (N, C, H, W) with C 1 or
3 -> images (channels-last (N, H, W, C) is refused: transpose it);
(N, D) -> features, any real dtype, returned as float32, all finite (columns
named x0..x{D-1}). Images: uint8 kept; other integer dtypes kept when every
value is in 0..255; floats in [0, 1] scaled by 255 and rounded; anything
else is refused. Labels: integers (floats only with no fractional part),
mapped to 0..K-1 in numeric order, named str(value) unless `data.class_names`
names them in that order. Files are loaded with allow_pickle=False: object
arrays are refused, never unpickled.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from steps.sources.base import DataError, RawData, SourceOptions, refuse_options
from steps.sources.images import conform_images
from steps.sources.labels import encode_labels, name_classes, split_off_test

X_KEYS = ("x", "images", "features")
Y_KEYS = ("y", "labels")
TEST_SUFFIX = "_test"
ALL_KEYS = frozenset(k + s for k in X_KEYS + Y_KEYS for s in ("", TEST_SUFFIX))
_LOAD_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
_NO_PICKLE = "shrinkflow reads plain numeric arrays only and never unpickles input files"


def _load_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str], list[Path]]:
    try:
        npz = np.load(path, allow_pickle=False)
    except _LOAD_ERRORS as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    with npz:
        keys = list(npz.files)
        _check_keys(keys, str(path))
        arrays = {}
        for key in keys:
            try:
                arrays[key] = npz[key]
            except _LOAD_ERRORS as err:
                raise DataError(f"{path}[{key}]: cannot load ({err}); {_NO_PICKLE}") from None
    return arrays, {key: f"{path}[{key}]" for key in arrays}, [path]


def _load_folder(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, str], list[Path]]:
    files = {p.stem: p for p in sorted(folder.glob("*.npy")) if not p.name.startswith(".") and p.is_file()}
    _check_keys(list(files), str(folder), ".npy")
    arrays = {}
    for key, path in files.items():
        try:
            arrays[key] = np.load(path, allow_pickle=False)
        except _LOAD_ERRORS as err:
            raise DataError(f"{path}: cannot load ({err}); {_NO_PICKLE}") from None
    return arrays, {key: str(path) for key, path in files.items()}, sorted(files.values())


def _check_keys(keys: list[str], where: str, ext: str = "") -> None:
    unknown = sorted(set(keys) - ALL_KEYS)
    if unknown:
        raise DataError(
            f"{where}: unexpected array(s) {[k + ext for k in unknown]}; expected one of {list(X_KEYS)} and one of "
            f"{list(Y_KEYS)}, optionally the same names + {TEST_SUFFIX!r} for a test split"
        )


def _pick(arrays: dict[str, np.ndarray], candidates: tuple[str, ...], suffix: str, where: str) -> str | None:
    present = [k + suffix for k in candidates if k + suffix in arrays]
    if len(present) > 1:
        raise DataError(f"{where}: both {present[0]!r} and {present[1]!r} given; keep one")
    return present[0] if present else None


def samples(x: np.ndarray, where: str) -> tuple[str, np.ndarray]:
    """(kind, array): uint8 (N, C, H, W) images or float32 (N, D) features, refused unless unambiguous."""
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{where}: no samples (shape {x.shape})")
    if x.dtype.kind not in "iuf":
        raise DataError(f"{where}: samples must be numbers, got dtype {x.dtype}")
    if x.ndim == 2:
        features = x.astype(np.float32)
        bad = (~np.isfinite(features)).sum(axis=0)
        if bad.any():
            columns = ", ".join(f"x{i} ({n} rows)" for i, n in enumerate(bad.tolist()) if n)
            raise DataError(f"{where}: NaN or infinite values (after conversion to float32) in {columns}")
        return "features", features
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3):
        hint = "; it looks channels-last (N, H, W, C): transpose to (N, C, H, W)" if x.shape[3] in (1, 3) else ""
        raise DataError(f"{where}: images must be (N, C, H, W) with C 1 or 3, got shape {x.shape}{hint}")
    elif x.ndim != 4:
        raise DataError(f"{where}: expected (N, D) features or (N, H, W) / (N, C, H, W) images, got shape {x.shape}")
    return "image", _pixels(x, where)


def _pixels(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    low, high = x.min(), x.max()
    if x.dtype.kind in "iu" and low >= 0 and high <= 255:
        return x.astype(np.uint8)
    if x.dtype.kind == "f" and np.isfinite(x).all() and low >= 0.0 and high <= 1.0:
        return np.rint(x * 255.0).astype(np.uint8)
    raise DataError(
        f"{where}: {x.dtype} images with values {low}..{high}; give uint8 (or integers in 0..255) or floats in [0, 1]"
    )


def read(path: Path, options: SourceOptions) -> RawData:
    """A .npz file or a folder of .npy files as image or feature RawData."""
    refuse_options(options, "arrays")
    if path.is_dir():
        arrays, where, raw_files = _load_folder(path)
    elif path.is_file() and path.suffix == ".npz":
        arrays, where, raw_files = _load_npz(path)
    else:
        raise DataError(f"{path}: not a .npz file or a folder of .npy files")
    x_key, y_key = _pick(arrays, X_KEYS, "", str(path)), _pick(arrays, Y_KEYS, "", str(path))
    if x_key is None or y_key is None:
        raise DataError(f"{path}: needs one of {list(X_KEYS)} and one of {list(Y_KEYS)}; found {sorted(arrays)}")
    x_test_key = _pick(arrays, X_KEYS, TEST_SUFFIX, str(path))
    y_test_key = _pick(arrays, Y_KEYS, TEST_SUFFIX, str(path))
    if (x_test_key is None) != (y_test_key is None):
        raise DataError(f"{path}: a test split needs both samples and labels; found only {x_test_key or y_test_key!r}")
    pairs = [(x_key, y_key)] + ([(x_test_key, y_test_key)] if x_test_key else [])
    parts = []
    for xk, yk in pairs:
        kind, x = samples(arrays[xk], where[xk])
        if len(x) != len(arrays[yk]):
            raise DataError(f"{where[yk]}: {len(arrays[yk])} labels but {where[xk]} has {len(x)} samples")
        parts.append((kind, x))
    codes, names = encode_labels([arrays[yk] for _, yk in pairs], [where[yk] for _, yk in pairs], allow_text=False)
    names = name_classes(names, options, str(path))
    kind = parts[0][0]
    if len(parts) == 2 and parts[1][0] != kind:
        raise DataError(f"{where[x_key]} holds {kind} but {where[x_test_key]} holds {parts[1][0]}")
    if kind == "features":
        refuse_options(options, "arrays (features)", ("image_size", "channels"))
    xs = [x if kind == "features" else conform_images(x, options) for _, x in parts]
    if len(parts) == 2 and xs[0].shape[1:] != xs[1].shape[1:]:
        raise DataError(
            f"{where[x_key]} holds samples of shape {xs[0].shape[1:]} but {where[x_test_key]} {xs[1].shape[1:]}"
        )
    if len(parts) == 2:
        train, test = (xs[0], codes[0]), (xs[1], codes[1])
    else:
        train, test = split_off_test(xs[0], codes[0], options, names)
    return RawData(
        kind=kind,
        train=train,
        test=test,
        class_names=names,
        raw_files=tuple(raw_files),
        name=path.stem if path.is_file() else path.resolve().name,
        feature_names=tuple(f"x{i}" for i in range(xs[0].shape[1])) if kind == "features" else (),
    )
