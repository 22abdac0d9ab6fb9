"""A caller's raw input -> the float32 batch the model's ONNX graph takes, or an InputError naming what is wrong.

Images: uint8 or float arrays of raw pixel values (N, H, W) (one channel), (N, H, W, C) or (N, C, H, W),
or encoded images (PNG, JPEG, ...: bytes, or base64 text as JSON carries them). Converted to the
contract's channels and, when the data stage resized, resized to its size exactly as the data stage
does (Pillow, the same mode conversion and filter); otherwise another size is refused.
Tables: a DataFrame with the contract's named feature columns in any order, unscaled.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import pandas as pd
from PIL import Image

from .contract import Contract
from .pixels import DECODE_ERRORS, conform_image, unsupported_mode



class InputError(ValueError):
    """The input does not fit the model's contract; the message names the field, row or column."""


def caller_rows(x: np.ndarray, contract: Contract) -> np.ndarray | pd.DataFrame:
    """A processed split's rows as a caller sends them: pixels (N, H, W) for one channel, (N, H, W, C) otherwise
    (Pillow's layouts); a table with the named feature columns. What promote and the audit score with."""
    if not contract.images:
        return pd.DataFrame(x, columns=list(contract.feature_names))
    return x[:, 0] if contract.channels == 1 else x.transpose(0, 2, 3, 1)


def to_batch(data, contract: Contract) -> np.ndarray:
    """float32 (N, C, H, W) raw pixel values or (N, D) raw features, checked against `contract`."""
    batch = features(data, contract) if not contract.images else images(data, contract)
    if len(batch) == 0:
        raise InputError("empty batch: no rows to score")
    return batch


def features(data, contract: Contract) -> np.ndarray:
    names = list(contract.feature_names)
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"expected a table with the columns {names}, got {type(data).__name__}")
    present = [str(c) for c in data.columns]
    missing, extra = [n for n in names if n not in present], [c for c in present if c not in names]
    if missing or extra:
        raise InputError(f"columns do not match the model's features: missing {missing}, unknown {extra} "
                         f"(expected {names})")
    table = data[names]
    try:
        values = table.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        bad = [c for c in names if not pd.api.types.is_numeric_dtype(table[c])]
        raise InputError(f"column(s) {bad} are not numeric") from None
    bad_rows = ~np.isfinite(values)
    if bad_rows.any():
        row, col = map(int, np.argwhere(bad_rows)[0])
        columns = [names[j] for j in np.flatnonzero(bad_rows.any(axis=0))]
        raise InputError(f"column(s) {columns} hold NaN or infinite values (first: row {row}, "
                         f"column {names[col]!r})")
    return values.astype(np.float32)


def images(data, contract: Contract) -> np.ndarray:
    if isinstance(data, pd.DataFrame):
        if data.shape[1] != 1:
            raise InputError(f"a table of images must have one column of encoded images, got {list(data.columns)}")
        data = data.iloc[:, 0].to_numpy()
    if not isinstance(data, np.ndarray):
        raise InputError(f"expected an array of raw pixel values or of encoded images, got {type(data).__name__}")
    if data.ndim == 1 and len(data) and (data.dtype.kind in "SU" or isinstance(data[0], str | bytes)):
        return np.stack([decoded(item, i, contract) for i, item in enumerate(data.tolist())]).astype(np.float32)
    return pixel_array(data, contract)


def pixel_array(data: np.ndarray, contract: Contract) -> np.ndarray:
    if data.dtype == object:
        try:
            data = data.astype(np.float64)
        except (TypeError, ValueError):
            raise InputError("pixel values must be numbers") from None
    if data.dtype.kind not in "uif":
        raise InputError(f"pixel values must be numbers, got dtype {data.dtype}")
    nchw = channels_first(data, contract)
    values = nchw.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        raise InputError("pixel values must be finite numbers in [0, 255]; got NaN or infinite values")
    if values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise InputError(f"pixel values must be raw values in [0, 255]; got the range [{values.min():g}, "
                         f"{values.max():g}]")
    return values if nchw.shape[2:] == tuple(contract.input_shape[1:]) else resized(values, contract)


def channels_first(data: np.ndarray, contract: Contract) -> np.ndarray:
    """(N, C, h, w) from (N, h, w) [one channel], (N, h, w, C) or (N, C, h, w); anything else refused."""
    c, h, w = contract.input_shape
    free = contract.resize is not None  # other sizes are resized, so only the channel count pins the layout
    fits = lambda shape: free or tuple(shape) == (h, w)  # noqa: E731
    if data.ndim == 3 and c == 1 and fits(data.shape[1:]):
        return data[:, None]
    if data.ndim == 4 and data.shape[1] == c and fits(data.shape[2:]):
        return data
    if data.ndim == 4 and data.shape[3] == c and fits(data.shape[1:3]):
        return data.transpose(0, 3, 1, 2)
    one = f"(N, {h}, {w}), " if c == 1 else ""
    size = f"any size (resized to {h}x{w})" if free else f"{h}x{w}"
    raise InputError(f"input of shape {tuple(data.shape)}: expected images of {c} channel(s), {size}: "
                     f"{one}(N, {h}, {w}, {c}) or (N, {c}, {h}, {w})")


def resized(batch: np.ndarray, contract: Contract) -> np.ndarray:
    """Pixels of another size, resized as the data stage resizes (Pillow on uint8, its filter)."""
    if np.any(batch != np.round(batch)):
        raise InputError(f"images of size {batch.shape[2]}x{batch.shape[3]} must be resized, which the data stage "
                         "does on whole-number pixel values: send uint8 pixels or encoded images")
    return np.stack([conform(Image.fromarray(to_pil_layout(image)), contract, f"image {i}")
                     for i, image in enumerate(batch.astype(np.uint8))]).astype(np.float32)


def to_pil_layout(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))


def decoded(item, index: int, contract: Contract) -> np.ndarray:
    """One encoded image (bytes, or base64 text) as uint8 (C, H, W)."""
    raw = item
    if isinstance(item, str):
        try:
            raw = base64.b64decode(item, validate=False)
        except (binascii.Error, ValueError):
            raise InputError(f"image {index}: not base64 text") from None
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except DECODE_ERRORS as err:
        raise InputError(f"image {index}: cannot be decoded as an image ({err})") from None
    if unsupported_mode(image.mode):
        raise InputError(f"image {index}: {unsupported_mode(image.mode)}")
    return conform(image, contract, f"image {index}")


def conform(image: Image.Image, contract: Contract, where: str) -> np.ndarray:
    """The data stage's conversion (its mode, then its size when it resized); another size is refused when the
    data stage did not resize."""
    c, h, w = contract.input_shape
    if image.size != (w, h) and contract.resize is None:
        raise InputError(f"{where}: size {image.size[0]}x{image.size[1]}, but the model takes {w}x{h} "
                         "and its data was not resized (no resize to apply)")
    return conform_image(image, c, contract.resize)
