"""IDX source: the four MNIST-style files in one folder (Fashion-MNIST, MNIST, EMNIST, KMNIST...).

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]

Each file may be gzipped or plain (not both at once). Images are unsigned
bytes (N, H, W) of any size, returned as (N, 1, H, W); the t10k files are the
test split. Labels are 0..K-1 where K is one more than the largest label,
named "0".."K-1" unless a `classes.txt` beside the files gives one name per
line in label order (or `data.class_names` in params.yaml does).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from steps.sources.base import DataError, RawData, SourceOptions, check_labels, refuse_options
from steps.sources.images import conform_images
from steps.sources.labels import CLASSES_FILE, name_classes, read_class_names

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzipped if its name ends in .gz) into an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(f"{path}: IDX element type 0x{dtype_code:02x} is not unsigned byte (0x08)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX header promises {expected} bytes for shape {shape}, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write unsigned bytes as an IDX file, gzipped if the name ends in .gz (what read_idx reads)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def find_files(folder: Path) -> dict[str, Path]:
    """The four IDX files in `folder`, each gzipped or plain; refuses a missing or doubled one."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (the idx source reads the four IDX files in a folder)")
    found, missing = {}, []
    for key, stem in FILES.items():
        candidates = [folder / name for name in (stem, f"{stem}.gz") if (folder / name).is_file()]
        if len(candidates) > 1:
            raise DataError(f"{folder}: both {stem} and {stem}.gz exist; keep one so it is clear which is read")
        if not candidates:
            missing.append(f"{stem}[.gz]")
        else:
            found[key] = candidates[0]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}")
    return found


def _images(path: Path) -> np.ndarray:
    images = read_idx(path)
    if images.ndim != 3 or 0 in images.shape[1:]:
        raise DataError(f"{path}: expected images of shape (N, H, W), got {images.shape}")
    if len(images) == 0:
        raise DataError(f"{path}: no images")
    return images[:, None]


def _labels(path: Path, images: Path, count: int) -> np.ndarray:
    labels = read_idx(path)
    if labels.ndim != 1:
        raise DataError(f"{path}: expected labels of shape (N,), got {labels.shape}")
    if len(labels) != count:
        raise DataError(f"{path}: {len(labels)} labels but {images.name} has {count} images")
    return labels


def read(folder: Path, options: SourceOptions) -> RawData:
    """The IDX files in `folder` as image RawData (train = train-*, test = t10k-*)."""
    refuse_options(options, "idx")
    files = find_files(folder)
    train_x, test_x = _images(files["train_images"]), _images(files["test_images"])
    if train_x.shape[2:] != test_x.shape[2:]:
        raise DataError(
            f"{files['train_images']} holds {train_x.shape[2:]} images but {files['test_images'].name} "
            f"holds {test_x.shape[2:]}"
        )
    train_y = _labels(files["train_labels"], files["train_images"], len(train_x))
    test_y = _labels(files["test_labels"], files["test_images"], len(test_x))
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    names_file = folder / CLASSES_FILE
    raw_files = sorted(files.values())
    if names_file.is_file():
        names = read_class_names(names_file, num_classes)
        raw_files = sorted([*raw_files, names_file])
        if options.class_names is not None and options.class_names != names:
            raise DataError(f"{names_file} and data.class_names disagree; keep one of them")
    else:
        names = name_classes(tuple(str(i) for i in range(num_classes)), options, str(folder))
    train_y = check_labels(train_y, names, str(files["train_labels"]))
    test_y = check_labels(test_y, names, str(files["test_labels"]))
    return RawData(
        kind="image",
        train=(conform_images(train_x, options), train_y),
        test=(conform_images(test_x, options), test_y),
        class_names=names,
        raw_files=tuple(raw_files),
        name=folder.resolve().name,
    )
