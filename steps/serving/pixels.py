"""One image to the contract's pixels: Pillow's mode conversion, then its bilinear resize to a square size.

The one place both sides convert images: the data stage (steps/sources/images.py) when it writes the
splits, and the served model and batch scoring when a caller sends another size or mode, so the two
can never drift apart.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Pillow's bilinear resize widens its triangle filter by the scale factor when
# shrinking, so it antialiases downscaling as well (no need for BOX there).
RESAMPLE = Image.Resampling.BILINEAR
MODES = {1: "L", 3: "RGB"}
GRAY_MODES = frozenset({"1", "L", "LA"})
COLOR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
"""8-bit modes the conversion takes; 16-bit and float images (I;16, I, F) would be clipped, so they are refused."""
# Pillow's own failures on a bad file: unreadable/unknown format (UnidentifiedImageError is an
# OSError), truncated data (OSError), broken chunks (SyntaxError, ValueError), decompression bombs.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def unsupported_mode(mode: str) -> str | None:
    """Why an image of `mode` cannot be converted, or None when it can."""
    if mode in GRAY_MODES | COLOR_MODES:
        return None
    return f"unsupported image mode {mode!r} (16-bit or float?); save it as 8-bit gray or RGB"


def conform_image(image: Image.Image, channels: int, size: int | None) -> np.ndarray:
    """One PIL image as a (C, H, W) uint8 array with `channels` channels, resized to size x size if given.

    Conversions are Pillow's: RGB -> L is ITU-R 601-2 luma; alpha is dropped,
    not composited (as torchvision's loader does); palettes are expanded.
    """
    mode = MODES[channels]
    if image.mode != mode:
        image = image.convert(mode)
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)
