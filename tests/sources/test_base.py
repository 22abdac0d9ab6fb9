"""The shared contract: options, RawData's checks, the stratified split, label encoding, the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from steps import sources
from steps.sources.base import DataError, RawData, SourceOptions, check_labels
from steps.sources.labels import encode_labels, stratified_split


def _features(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, 2), np.float32), np.arange(n, dtype=np.int64) % 2


def test_options_turn_lists_into_tuples_and_refuse_bad_values():
    options = SourceOptions(feature_columns=["a", "b"], class_names=["x", "y"])
    assert options.feature_columns == ("a", "b") and options.class_names == ("x", "y")
    hash(options)  # immutable and hashable, so it can key a cache
    for bad in ({"test_fraction": 0.0}, {"test_fraction": 1.0}, {"image_size": 0}, {"channels": "cmyk"}):
        with pytest.raises(ValueError):
            SourceOptions(**bad)
    with pytest.raises(ValueError, match="list of strings"):
        SourceOptions(feature_columns="a")


def test_stratified_split_is_stratified_seeded_and_disjoint():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    keep, held = stratified_split(labels, 0.2, seed=7)
    assert np.bincount(labels[held]).tolist() == [10, 6, 4]
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(100))
    again = stratified_split(labels, 0.2, seed=7)
    assert np.array_equal(again[0], keep) and np.array_equal(again[1], held)
    assert not np.array_equal(stratified_split(labels, 0.2, seed=8)[1], held)


def test_stratified_split_keeps_every_class_on_both_sides():
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    keep, held = stratified_split(labels, 0.2, seed=0)
    assert set(labels[keep]) == {0, 1} and set(labels[held]) == {0, 1}


def test_stratified_split_refuses_a_class_with_too_few_rows_by_name():
    labels = np.array([0, 0, 0, 1])
    with pytest.raises(DataError, match=r"class 'cat' has 1 row\(s\); a stratified split of 20% needs at least 2"):
        stratified_split(labels, 0.2, seed=0, class_names=("dog", "cat"))


def test_check_labels_refuses_out_of_range_floats_and_2d():
    assert check_labels(np.array([0, 1], np.uint8), ("a", "b"), "w").dtype == np.int64
    with pytest.raises(DataError, match=r"label 2 out of range 0..1"):
        check_labels(np.array([0, 2]), ("a", "b"), "w")
    with pytest.raises(DataError, match="integers"):
        check_labels(np.array([0.0, 1.0]), ("a", "b"), "w")
    with pytest.raises(DataError, match="1-D"):
        check_labels(np.zeros((2, 2), np.int64), ("a", "b"), "w")


def test_encode_labels_sorts_numbers_numerically_and_refuses_unseen_test_labels():
    codes, names = encode_labels([np.array([10, 2, 10]), np.array([2])], ["train", "test"], allow_text=False)
    assert names == ("2", "10") and codes[0].tolist() == [1, 0, 1] and codes[1].tolist() == [0]
    with pytest.raises(DataError, match=r"test: label\(s\) \['5'\] do not occur"):
        encode_labels([np.array([1, 2]), np.array([5])], ["train", "test"], allow_text=False)
    with pytest.raises(DataError, match="labels must be integers"):
        encode_labels([np.array(["a", "b"])], ["y"], allow_text=False)


def test_raw_data_refuses_a_class_without_training_rows_and_bad_dtypes():
    x, y = _features()
    kwargs = {"kind": "features", "test": (x, y), "raw_files": (Path("a"),), "name": "t", "feature_names": ("f", "g")}
    data = RawData(train=(x, y), class_names=("a", "b"), **kwargs)
    assert data.num_classes == 2
    with pytest.raises(DataError, match=r"\['c'\] have no training rows"):
        RawData(train=(x, y), class_names=("a", "b", "c"), **kwargs)
    with pytest.raises(DataError, match="float32"):
        RawData(train=(x.astype(np.float64), y), class_names=("a", "b"), **kwargs)


def test_registry_names_and_unknown_source():
    assert set(sources.SOURCES) == {"idx", "image_folder", "arrays", "table", "text"}
    with pytest.raises(ValueError, match=r"unknown data source 'hdf5'; choose one of \['arrays', 'idx'"):
        sources.read("hdf5", Path("."), SourceOptions())


def test_read_refuses_a_missing_path(tmp_path: Path):
    with pytest.raises(DataError, match=r"nothing.npz: does not exist"):
        sources.read("arrays", tmp_path / "nothing.npz")
