"""The IDX source: any image size and class count, class names, and every malformed file refused by name."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from steps import sources
from steps.sources.base import DataError, SourceOptions
from steps.sources.idx import FILES, read_idx, write_idx


def _write(folder: Path, n_train: int = 36, n_test: int = 12, size: int = 20, classes: int = 12, gz: bool = True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        arrays[f"{part}_images"] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        arrays[f"{part}_labels"] = (np.arange(n) % classes).astype(np.uint8)
    suffix = ".gz" if gz else ""
    for key, array in arrays.items():
        write_idx(folder / f"{FILES[key]}{suffix}", array)
    return arrays


def _path(folder: Path, key: str) -> Path:
    return folder / f"{FILES[key]}.gz"


def test_reads_any_size_and_class_count(tmp_path: Path):
    arrays = _write(tmp_path / "kmnist", size=20, classes=12)
    data = sources.read("idx", tmp_path / "kmnist", SourceOptions())
    assert data.kind == "image" and data.name == "kmnist"
    assert data.train[0].shape == (36, 1, 20, 20) and data.train[0].dtype == np.uint8
    assert data.test[0].shape == (12, 1, 20, 20)
    assert data.train[1].dtype == np.int64 and data.train[1].tolist() == arrays["train_labels"].tolist()
    np.testing.assert_array_equal(data.test[0][:, 0], arrays["test_images"])
    assert data.class_names == tuple(str(i) for i in range(12))
    assert data.raw_files == tuple(sorted(_path(tmp_path / "kmnist", key) for key in FILES))


def test_plain_files_round_trip(tmp_path: Path):
    arrays = _write(tmp_path, size=8, classes=3, gz=False)
    np.testing.assert_array_equal(read_idx(tmp_path / FILES["train_images"]), arrays["train_images"])
    data = sources.read("idx", tmp_path)
    assert data.train[0].shape == (36, 1, 8, 8) and data.class_names == ("0", "1", "2")


def test_classes_txt_names_the_labels_and_is_hashed(tmp_path: Path):
    _write(tmp_path, classes=3)
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\n")
    data = sources.read("idx", tmp_path)
    assert data.class_names == ("cat", "dog", "bird")
    assert tmp_path / "classes.txt" in data.raw_files and list(data.raw_files) == sorted(data.raw_files)
    with pytest.raises(DataError, match="disagree"):
        sources.read("idx", tmp_path, SourceOptions(class_names=("a", "b", "c")))
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError, match=r"classes.txt: names 2 classes but the labels go up to 2"):
        sources.read("idx", tmp_path)


def test_class_names_option_names_bare_labels(tmp_path: Path):
    _write(tmp_path, classes=3)
    assert sources.read("idx", tmp_path, SourceOptions(class_names=["a", "b", "c"])).class_names == ("a", "b", "c")
    with pytest.raises(DataError, match="class_names lists 2 names but the data has 3 classes"):
        sources.read("idx", tmp_path, SourceOptions(class_names=["a", "b"]))


def test_resizes_and_converts_channels_on_request(tmp_path: Path):
    _write(tmp_path, size=20, classes=3)
    data = sources.read("idx", tmp_path, SourceOptions(image_size=16, channels="rgb"))
    assert data.train[0].shape == (36, 3, 16, 16)
    np.testing.assert_array_equal(data.train[0][:, 0], data.train[0][:, 2])


def test_refuses_missing_and_doubled_files(tmp_path: Path):
    _write(tmp_path, classes=3)
    _path(tmp_path, "test_labels").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        sources.read("idx", tmp_path)
    _write(tmp_path, classes=3)
    write_idx(tmp_path / FILES["test_labels"], np.zeros(12, np.uint8))
    with pytest.raises(DataError, match=r"both t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz"):
        sources.read("idx", tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x02\x08\x03", "bad magic"),
        (b"\x00\x00\x0d\x03", "element type 0x0d"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "promises 5 bytes for shape"),
    ],
)
def test_read_idx_refuses_malformed_files(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(content)
    with pytest.raises(DataError, match=f"bad.gz: .*{message}"):
        read_idx(path)


def test_read_idx_refuses_a_corrupt_gzip(tmp_path: Path):
    path = tmp_path / "cut.gz"
    write_idx(path, np.zeros((4, 8, 8), np.uint8))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match=r"cut.gz: cannot read"):
        read_idx(path)


def test_refuses_label_count_mismatch_empty_split_and_size_mismatch(tmp_path: Path):
    _write(tmp_path, classes=3)
    write_idx(_path(tmp_path, "train_labels"), np.zeros(35, np.uint8))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: 35 labels but train-images-idx3-ubyte.gz has 36"):
        sources.read("idx", tmp_path)
    _write(tmp_path, classes=3)
    write_idx(_path(tmp_path, "test_images"), np.zeros((0, 20, 20), np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: no images"):
        sources.read("idx", tmp_path)
    _write(tmp_path, classes=3)
    write_idx(_path(tmp_path, "test_images"), np.zeros((12, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"holds \(20, 20\) images but t10k-images-idx3-ubyte.gz holds \(8, 8\)"):
        sources.read("idx", tmp_path)
    _write(tmp_path, classes=3)
    write_idx(_path(tmp_path, "train_images"), np.zeros((36, 400), np.uint8))
    with pytest.raises(DataError, match=r"expected images of shape \(N, H, W\), got \(36, 400\)"):
        sources.read("idx", tmp_path)


def test_refuses_a_class_missing_from_training(tmp_path: Path):
    _write(tmp_path, classes=3)
    write_idx(_path(tmp_path, "train_labels"), np.zeros(36, np.uint8))
    with pytest.raises(DataError, match=r"\['1', '2'\] have no training rows"):
        sources.read("idx", tmp_path)


def test_refuses_table_options(tmp_path: Path):
    _write(tmp_path, classes=3)
    with pytest.raises(ValueError, match="the idx source does not use label_column"):
        sources.read("idx", tmp_path, SourceOptions(label_column="y"))
