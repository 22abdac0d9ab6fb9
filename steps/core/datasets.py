"""What every stage reads: the processed splits, refused unless each file's sha256 matches the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from steps.core.hashing import sha256
from steps.core.layout import DATA_DIR, MANIFEST

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """Input data is missing, corrupt, tampered with or malformed; names the file."""


def check_pair(images: np.ndarray, labels: np.ndarray, where: str, num_classes: int) -> None:
    """One split's arrays are well formed: uint8 (N, 28, 28) images, N uint8 labels below `num_classes`."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{where}: expected images of shape (N, 28, 28), got {images.shape}")
    if labels.shape != (len(images),):
        raise DataError(f"{where}: {len(images)} images but labels of shape {labels.shape}")
    if len(labels) == 0:
        raise DataError(f"{where}: empty split")
    if labels.dtype != np.uint8 or images.dtype != np.uint8:
        raise DataError(f"{where}: expected uint8 arrays, got {images.dtype}/{labels.dtype}")
    if labels.max() >= num_classes:
        raise DataError(f"{where}: label {int(labels.max())} out of range 0..{num_classes - 1}")


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the data stage first") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: corrupt manifest: {err}") from None


def load_arrays(root: Path, name: str, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    """One split's uint8 images and labels, refused unless its sha256 matches the manifest."""
    path = root / DATA_DIR / f"{name}.npz"
    entry = manifest["files"].get(f"{name}.npz")
    if entry is None or not path.is_file():
        raise DataError(f"{path}: missing split file")
    if sha256(path) != entry["sha256"]:
        raise DataError(f"{path}: sha256 does not match {MANIFEST}; the file was changed or truncated")
    with np.load(path, allow_pickle=False) as npz:
        images, labels = npz["images"], npz["labels"]
    check_pair(images, labels, str(path), len(manifest["classes"]))
    return images, labels


def load_splits(root: Path, names: tuple[str, ...] = SPLITS):
    """Hash-checked, normalised tensors for training: {name: training.Split}."""
    import torch

    from steps.compression.training import Split

    manifest = read_manifest(root)
    mean, std = manifest["normalization"]["mean"], manifest["normalization"]["std"]
    result = {}
    for name in names:
        images, labels = load_arrays(root, name, manifest)
        x = (torch.from_numpy(images).float().div_(255.0).sub_(mean).div_(std)).unsqueeze(1)
        result[name] = Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))
    return result


def identity(root: Path) -> tuple[str, str]:
    """(name, digest) of the processed data, for MLflow's dataset lineage: the manifest's dataset name with
    the first 16 hex digits of the manifest's sha256 (which covers every split file's sha256)."""
    digest = sha256(root / MANIFEST)[:16]
    return f"{read_manifest(root)['dataset']}-{digest}", digest
