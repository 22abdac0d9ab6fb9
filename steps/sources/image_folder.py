"""Image-folder source: one folder per class (the torchvision ImageFolder / Keras convention).

Two layouts:

    root/<class>/**/*.png|jpg|jpeg                 test split: seeded, stratified `test_fraction`
    root/train/<class>/...  root/test/<class>/...  the given test split, kept as it is

Class names are the class folders' names in Python's sorted order (case
matters: "Zebra" sorts before "ant"); train/ and test/ must hold the same
classes. Images are found recursively inside each class folder; hidden files
and folders (".*") are skipped, and so are files with other extensions
(extensions match case-insensitively). Every class folder needs an image.

Channels follow the data unless `data.channels` says otherwise: all images
grayscale ("1", "L", "LA") give 1 channel; any colour image (RGB, RGBA,
palette, CMYK, YCbCr) gives 3 for all. Alpha is dropped, not composited.
16-bit and float images are refused. Without `data.image_size` all images
must have one size; with it each is resized to a square with Pillow's
bilinear filter (antialiased when shrinking; the aspect ratio is not kept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from steps.serving.pixels import COLOR_MODES, DECODE_ERRORS, unsupported_mode
from steps.sources.base import CHANNELS, DataError, RawData, SourceOptions, refuse_options
from steps.sources.images import conform_image
from steps.sources.folders import class_layout, visible
from steps.sources.labels import split_off_test

EXTENSIONS = (".png", ".jpg", ".jpeg")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in EXTENSIONS


def scan_classes(split_root: Path) -> dict[str, list[Path]]:
    """{class name: its image files, sorted} for the class folders directly under split_root."""
    entries = visible(split_root)
    stray = [p for p in entries if _is_image(p)]
    if stray:
        raise DataError(f"{stray[0]}: images must be inside a class folder ({split_root}/<class>/...)")
    classes = {}
    for folder in (p for p in entries if p.is_dir()):
        files = sorted(
            p
            for p in folder.rglob("*")
            if _is_image(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        if not files:
            raise DataError(f"{folder}: class folder has no {'/'.join(EXTENSIONS)} images")
        classes[folder.name] = files
    if not classes:
        raise DataError(f"{split_root}: no class folders (expected {split_root}/<class>/<image>)")
    return classes


def _layout(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{"all": classes} for the flat layout, {"train": ..., "test": ...} for the split one."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (the image_folder source reads root/<class>/<image>)")
    return class_layout(root, scan_classes, loose=_is_image, what="images")


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
    except DECODE_ERRORS as err:
        raise DataError(f"{path}: not a readable image ({err})") from None
    if unsupported_mode(mode):
        raise DataError(f"{path}: {unsupported_mode(mode)}")
    return mode, size


def _decode(files: list[Path], channels: int, size: int | None, shape: tuple[int, int]) -> np.ndarray:
    out = np.empty((len(files), channels, *shape), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as image:
                out[i] = conform_image(image, channels, size)
        except DECODE_ERRORS as err:
            raise DataError(f"{path}: not a readable image ({err})") from None
    return out


def read(root: Path, options: SourceOptions) -> RawData:
    """Images under `root` (either layout) as image RawData."""
    refuse_options(options, "image_folder")
    parts = _layout(root)
    class_names = tuple(sorted(next(iter(parts.values()))))
    files = {part: [f for name in class_names for f in classes[name]] for part, classes in parts.items()}
    labels = {
        part: np.concatenate([np.full(len(classes[name]), i, dtype=np.int64) for i, name in enumerate(class_names)])
        for part, classes in parts.items()
    }
    every_file = [f for part in files.values() for f in part]
    headers = {path: _header(path) for path in every_file}
    if options.channels:
        channels = CHANNELS[options.channels]
    else:
        channels = 3 if any(mode in COLOR_MODES for mode, _ in headers.values()) else 1
    if options.image_size is None:
        first = every_file[0]
        for path in every_file:
            if headers[path][1] != headers[first][1]:
                (w1, h1), (w2, h2) = headers[first][1], headers[path][1]
                raise DataError(
                    f"images differ in size: {first} is {w1}x{h1}, {path} is {w2}x{h2} (width x height); "
                    "set data.image_size to resize them all"
                )
        width, height = headers[first][1]
        shape = (height, width)
    else:
        shape = (options.image_size, options.image_size)
    arrays = {
        part: (_decode(paths, channels, options.image_size, shape), labels[part]) for part, paths in files.items()
    }
    if "all" in arrays:
        train, test = split_off_test(*arrays["all"], options, class_names)
    else:
        train, test = arrays["train"], arrays["test"]
    return RawData(
        kind="image",
        train=train,
        test=test,
        class_names=class_names,
        raw_files=tuple(sorted(every_file)),
        name=root.resolve().name,
    )
