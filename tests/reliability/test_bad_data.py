"""Bad data stops the pipeline at the stage that reads it, names the file, and registers nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.checkout import copy_project
from steps import config, data
from steps.core.datasets import load_splits
from steps.core.hashing import sha256
from steps.core.layout import DATA_DIR, MANIFEST
from tests.helpers import shrinkflow, tiny_params


@pytest.mark.integration
def test_truncated_raw_file_stops_the_run_naming_it(tmp_path: Path, idx_dir: Path):
    raw = tmp_path / "raw"
    shutil.copytree(idx_dir, raw)
    images = raw / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    root = copy_project(tmp_path / "project", tiny_params(raw))
    result = shrinkflow(root, "run")
    assert result.returncode == 1
    assert "stage 'data' failed" in result.stderr and "train-images-idx3-ubyte.gz" in result.stderr
    assert not (root / DATA_DIR).exists()
    assert not (root / "mlflow.db").exists()  # no stage that talks to the registry ran


def rewrite_split(root: Path, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Replace a split *and* its manifest hash, as a buggy writer would: only the content checks can object."""
    path = root / DATA_DIR / f"{name}.npz"
    np.savez(path, images=images, labels=labels)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["files"][f"{name}.npz"]["sha256"] = sha256(path)
    (root / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("images", "labels", "expected"),
    [
        (np.zeros((4, 28, 27), np.uint8), np.zeros(4, np.uint8), "expected images of shape"),
        (np.zeros((4, 28, 28), np.float32), np.zeros(4, np.uint8), "expected uint8"),
        (np.zeros((4, 28, 28), np.uint8), np.full(4, 10, np.uint8), "label 10 out of range"),
        (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), "empty split"),
        (np.zeros((4, 28, 28), np.uint8), np.zeros(3, np.uint8), "4 images but labels"),
    ],
)
def test_malformed_split_is_refused_naming_the_file(tmp_path: Path, idx_dir: Path, images, labels, expected):
    data.run(config.validate(tiny_params(idx_dir)), tmp_path)
    rewrite_split(tmp_path, "train", images, labels)
    with pytest.raises(data.DataError, match=expected) as err:
        load_splits(tmp_path)
    assert "train.npz" in str(err.value)
