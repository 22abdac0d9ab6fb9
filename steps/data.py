"""Data step: Fashion-MNIST IDX files -> seeded train/val/test splits + manifest.

Reads the standard IDX format (as published by Zalando, or Debian's
`dataset-fashion-mnist` package) from `data.raw_dir`. Writes uncompressed
.npz splits and `manifest.json` with the sha256 of every file; every reader
(`steps.core.datasets.load_splits`) re-checks those hashes, so a tampered or truncated file is
refused with its name before any training starts.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

from steps import config
from steps.core.datasets import DataError, check_pair
from steps.core.hashing import sha256
from steps.core.layout import DATA_DIR
from steps.core.results import DataResult

RAW_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
WHERE_TO_GET = (
    "install Debian's package (apt-get install dataset-fashion-mnist, files land in "
    "/usr/share/datasets/fashion-mnist) or download the four .gz files from "
    "github.com/zalandoresearch/fashion-mnist (data/fashion) and set data.raw_dir in params.yaml"
)


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (gzip or plain) of unsigned bytes into an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
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
    """Write unsigned bytes as a gzipped IDX file, the format read_idx reads (for data from elsewhere)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def read_raw(raw_dir: Path) -> dict[str, np.ndarray]:
    missing = [name for name in RAW_FILES.values() if not (raw_dir / name).is_file()]
    if missing:
        raise DataError(f"{raw_dir}: missing {', '.join(missing)}; {WHERE_TO_GET}")
    arrays = {key: read_idx(raw_dir / name) for key, name in RAW_FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        check_pair(images, labels, f"{raw_dir}/{RAW_FILES[f'{part}_images']}", len(CLASSES))
    return arrays


def split(arrays: dict[str, np.ndarray], cfg: config.DataConfig, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seeded hold-out of `val_size` training images; optional limits for quick runs."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(arrays["train_labels"]))
    if cfg.val_size >= len(order):
        raise DataError(f"data.val_size={cfg.val_size} leaves no training images out of {len(order)}")
    val_idx, train_idx = order[: cfg.val_size], order[cfg.val_size :]
    if cfg.train_limit is not None:
        train_idx = train_idx[: cfg.train_limit]
    test_n = len(arrays["test_labels"]) if cfg.test_limit is None else cfg.test_limit
    return {
        "train": (arrays["train_images"][train_idx], arrays["train_labels"][train_idx]),
        "val": (arrays["train_images"][val_idx], arrays["train_labels"][val_idx]),
        "test": (arrays["test_images"][:test_n], arrays["test_labels"][:test_n]),
    }


def write_splits(root: Path, splits: dict, raw_hashes: dict[str, str], seed: int) -> DataResult:
    """Write splits + manifest into a temp dir, then swap it in whole."""
    out = root / DATA_DIR
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".processed.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the data is not secret
    try:
        files = {}
        for name, (images, labels) in splits.items():
            path = tmp / f"{name}.npz"
            np.savez(path, images=images, labels=labels)
            files[f"{name}.npz"] = {"sha256": sha256(path), "rows": len(labels)}
        train_x = splits["train"][0].astype(np.float64) / 255.0
        manifest = DataResult(dataset="fashion-mnist", classes=list(CLASSES), seed=seed, files=files, raw=raw_hashes,
                              normalization={"mean": float(train_x.mean()), "std": float(train_x.std())})
        (tmp / "manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def run(params: config.Params, root: Path) -> DataResult:
    """Build the splits from the raw IDX files; returns the manifest."""
    raw_dir = Path(params.data.raw_dir)
    if not raw_dir.is_absolute():
        raw_dir = root / raw_dir
    arrays = read_raw(raw_dir)
    raw_hashes = {name: sha256(raw_dir / name) for name in RAW_FILES.values()}
    return write_splits(root, split(arrays, params.data, params.seed), raw_hashes, params.seed)


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("data", run, sys.argv[1:])


if __name__ == "__main__":
    main()
