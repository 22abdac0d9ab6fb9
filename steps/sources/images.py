"""Images to the contract's shape: uint8 (C, H, W) with the channels and size `data.channels` and
`data.image_size` ask for, converted and resized by Pillow."""

from __future__ import annotations

import numpy as np
from PIL import Image

from steps.serving.pixels import conform_image
from steps.sources.base import CHANNELS, SourceOptions

__all__ = ["conform_image", "conform_images"]

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
