"""Images to the contract's shape: uint8 (C, H, W) with the channels and size `data.channels` and
`data.image_size` ask for, converted and resized by Pillow."""

from __future__ import annotations

import numpy as np
from PIL import Image

from steps.sources.base import CHANNELS, SourceOptions

# Pillow's bilinear resize widens its triangle filter by the scale factor when
# shrinking, so it antialiases downscaling as well (no need for BOX there).
RESAMPLE = Image.Resampling.BILINEAR
_PIL_MODE = {1: "L", 3: "RGB"}


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
