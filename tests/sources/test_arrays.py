"""The arrays source: npz keys and npy folders, images vs features by shape, labels, and no unpickling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from steps import sources
from steps.sources.base import DataError, SourceOptions


def _labels(n: int, values=(0, 1, 2)) -> np.ndarray:
    return np.array([values[i % len(values)] for i in range(n)])


def test_npz_images_with_a_test_split_kept_as_given(tmp_path: Path):
    rng = np.random.default_rng(0)
    x, x_test = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), rng.integers(0, 256, (9, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "digits.npz", images=x, labels=_labels(30), images_test=x_test, labels_test=_labels(9))
    data = sources.read("arrays", tmp_path / "digits.npz")
    assert data.kind == "image" and data.name == "digits" and data.raw_files == (tmp_path / "digits.npz",)
    assert data.train[0].shape == (30, 1, 8, 8) and data.train[0].dtype == np.uint8
    np.testing.assert_array_equal(data.test[0][:, 0], x_test)
    assert data.test[1].dtype == np.int64 and data.class_names == ("0", "1", "2")


def test_float_images_in_0_1_become_uint8_and_can_be_resized(tmp_path: Path):
    x = np.full((12, 3, 20, 20), 0.5, np.float32)
    x[:, 0] = 1.0
    np.savez(tmp_path / "a.npz", x=x, y=_labels(12))
    data = sources.read("arrays", tmp_path / "a.npz", SourceOptions(image_size=16, test_fraction=0.25))
    assert data.train[0].shape == (9, 3, 16, 16) and data.test[0].shape == (3, 3, 16, 16)
    assert data.train[0][:, 0].min() == 255 and data.train[0][:, 1].max() == 128


def test_arbitrary_integer_labels_map_to_0_k_in_numeric_order(tmp_path: Path):
    np.savez(tmp_path / "a.npz", x=np.zeros((12, 4, 4), np.uint8), y=_labels(12, (12, 3, 7)))
    data = sources.read("arrays", tmp_path / "a.npz", SourceOptions(test_fraction=0.25))
    assert data.class_names == ("3", "7", "12")
    assert sorted(np.concatenate([data.train[1], data.test[1]]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    named = sources.read("arrays", tmp_path / "a.npz", SourceOptions(class_names=("three", "seven", "twelve")))
    assert named.class_names == ("three", "seven", "twelve")


def test_features_from_a_folder_of_npy_files(tmp_path: Path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", _labels(40, (0, 1)).astype(np.float64))  # integral floats are fine
    (tmp_path / "notes.txt").write_text("ignored")
    data = sources.read("arrays", tmp_path, SourceOptions(test_fraction=0.25, seed=5))
    assert data.kind == "features" and data.feature_names == ("x0", "x1", "x2", "x3", "x4")
    assert data.train[0].dtype == np.float32 and data.train[0].shape == (30, 5) and data.test[0].shape == (10, 5)
    assert np.bincount(data.test[1]).tolist() == [5, 5]
    assert data.raw_files == (tmp_path / "x.npy", tmp_path / "y.npy")
    again = sources.read("arrays", tmp_path, SourceOptions(test_fraction=0.25, seed=5))
    np.testing.assert_array_equal(data.test[0], again.test[0])
    np.testing.assert_allclose(np.sort(np.concatenate([data.train[0], data.test[0]]), 0), np.sort(x, 0), rtol=1e-6)


def test_folder_with_test_files(tmp_path: Path):
    for name, array in {"x": np.ones((6, 2)), "y": _labels(6), "x_test": np.ones((3, 2)), "y_test": _labels(3)}.items():
        np.save(tmp_path / f"{name}.npy", array)
    data = sources.read("arrays", tmp_path)
    assert len(data.train[1]) == 6 and len(data.test[1]) == 3 and len(data.raw_files) == 4


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.array([0, 1, 2.5] * 4), r"labels must be integers; 4 are not \(e.g. 2.5\)"),
        (np.array(["a", "b", "c"] * 4), "labels must be integers, got dtype <U1"),
        (np.eye(3)[_labels(12)], r"labels must be 1-D, got shape \(12, 3\) \(one-hot\?"),
    ],
)
def test_refuses_labels_that_are_not_integers(tmp_path: Path, y: np.ndarray, message: str):
    np.savez(tmp_path / "a.npz", x=np.zeros((12, 2)), y=y)
    with pytest.raises(DataError, match=rf"a.npz\[y\]: {message}"):
        sources.read("arrays", tmp_path / "a.npz")


def test_refuses_pickled_object_arrays_without_unpickling(tmp_path: Path):
    objects = np.empty(12, dtype=object)
    objects[:] = [{"label": i % 3} for i in range(12)]
    np.savez(tmp_path / "a.npz", x=np.zeros((12, 2)), y=objects)
    with pytest.raises(DataError, match=r"a.npz\[y\]: cannot load .*never unpickles"):
        sources.read("arrays", tmp_path / "a.npz")
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "x.npy", objects, allow_pickle=True)
    np.save(folder / "y.npy", _labels(12))
    with pytest.raises(DataError, match=r"npy/x.npy: cannot load .*never unpickles"):
        sources.read("arrays", folder)


def test_refuses_unknown_ambiguous_and_half_test_keys(tmp_path: Path):
    x, y = np.zeros((6, 2)), _labels(6)
    np.savez(tmp_path / "extra.npz", x=x, y=y, x_val=x)
    with pytest.raises(DataError, match=r"extra.npz: unexpected array\(s\) \['x_val'\]"):
        sources.read("arrays", tmp_path / "extra.npz")
    np.savez(tmp_path / "two.npz", x=x, features=x, y=y)
    with pytest.raises(DataError, match="both 'x' and 'features' given"):
        sources.read("arrays", tmp_path / "two.npz")
    np.savez(tmp_path / "half.npz", x=x, y=y, x_test=x)
    with pytest.raises(DataError, match="found only 'x_test'"):
        sources.read("arrays", tmp_path / "half.npz")
    np.savez(tmp_path / "nolabels.npz", x=x)
    with pytest.raises(DataError, match=r"needs one of .* found \['x'\]"):
        sources.read("arrays", tmp_path / "nolabels.npz")


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((6, 8, 8, 3), np.uint8), "looks channels-last"),
        (np.full((6, 8, 8), 2.0), r"float64 images with values 2.0..2.0"),
        (np.full((6, 8, 8), 300), "int64 images with values 300..300"),
        (np.zeros(6), r"got shape \(6,\)"),
        (np.array([[1.0, np.nan]] * 6), r"NaN or infinite .* in x1 \(6 rows\)"),
        (np.array([["a", "b"]] * 6), "samples must be numbers"),
    ],
)
def test_refuses_samples_it_cannot_read_unambiguously(tmp_path: Path, x: np.ndarray, message: str):
    np.savez(tmp_path / "a.npz", x=x, y=_labels(6))
    with pytest.raises(DataError, match=rf"a.npz\[x\]: .*{message}"):
        sources.read("arrays", tmp_path / "a.npz")


def test_refuses_mismatched_train_and_test_and_unseen_test_labels(tmp_path: Path):
    np.savez(tmp_path / "a.npz", x=np.zeros((6, 2)), y=_labels(6), x_test=np.zeros((3, 3)), y_test=_labels(3))
    with pytest.raises(DataError, match=r"a.npz\[x\] holds samples of shape \(2,\) but .*\[x_test\] \(3,\)"):
        sources.read("arrays", tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=np.zeros((6, 2)), y=_labels(6), x_test=np.zeros((3, 2)), y_test=[0, 1, 9])
    with pytest.raises(DataError, match=r"b.npz\[y_test\]: label\(s\) \['9'\] do not occur in the training data"):
        sources.read("arrays", tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x=np.zeros((6, 2)), y=_labels(5))
    with pytest.raises(DataError, match=r"c.npz\[y\]: 5 labels but .*c.npz\[x\] has 6 samples"):
        sources.read("arrays", tmp_path / "c.npz")


def test_refuses_a_class_too_small_for_the_split_and_image_options_on_features(tmp_path: Path):
    np.savez(tmp_path / "a.npz", x=np.zeros((7, 2)), y=[5, 5, 5, 8, 8, 8, 9])
    with pytest.raises(DataError, match=r"class '9' has 1 row\(s\)"):
        sources.read("arrays", tmp_path / "a.npz")
    with pytest.raises(ValueError, match=r"arrays \(features\) source does not use image_size"):
        sources.read("arrays", tmp_path / "a.npz", SourceOptions(image_size=8))


def test_refuses_a_file_that_is_not_npz(tmp_path: Path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"junk.npz: not a readable .npz file"):
        sources.read("arrays", tmp_path / "junk.npz")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"data.csv: not a .npz file or a folder of .npy files"):
        sources.read("arrays", tmp_path / "data.csv")
