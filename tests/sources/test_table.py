"""The table source: Parquet and CSV, folders of files, label encoding, and bad columns refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps import sources
from steps.sources.base import DataError, SourceOptions

LABEL = SourceOptions(label_column="species", test_fraction=0.25, seed=0)


def _frame(n: int = 12, start: int = 0) -> pd.DataFrame:
    rows = np.arange(start, start + n)
    return pd.DataFrame(
        {
            "length": rows.astype(np.float64),
            "width": rows * 2,
            "species": np.array(["setosa", "virginica", "versicolor"])[rows % 3],
            "wet": rows % 2 == 0,
        }
    )


def test_parquet_string_labels_sorted_and_float32_features(tmp_path: Path):
    _frame().to_parquet(tmp_path / "iris.parquet")
    data = sources.read("table", tmp_path / "iris.parquet", LABEL)
    assert data.kind == "features" and data.name == "iris" and data.raw_files == (tmp_path / "iris.parquet",)
    assert data.class_names == ("setosa", "versicolor", "virginica")
    assert data.feature_names == ("length", "width", "wet")
    assert data.train[0].dtype == np.float32 and data.train[0].shape == (9, 3) and data.test[0].shape == (3, 3)
    assert np.bincount(data.test[1]).tolist() == [1, 1, 1]
    # Rows stay whole: width is twice length, and the label follows the row (length % 3: setosa, virginica, ...).
    x = np.concatenate([data.train[0], data.test[0]])
    y = np.concatenate([data.train[1], data.test[1]])
    np.testing.assert_array_equal(x[:, 1], 2 * x[:, 0])
    assert [data.class_names[c] for c in y] == [["setosa", "virginica", "versicolor"][int(v) % 3] for v in x[:, 0]]


def test_csv_integer_labels_sort_numerically_and_feature_columns_select(tmp_path: Path):
    frame = _frame()
    frame["species"] = np.array([2, 10, 7])[np.arange(12) % 3]
    frame.to_csv(tmp_path / "t.csv", index=False)
    options = SourceOptions(label_column="species", feature_columns=["width"], test_fraction=0.25)
    data = sources.read("table", tmp_path / "t.csv", options)
    assert data.class_names == ("2", "7", "10") and data.feature_names == ("width",)
    assert data.train[0].shape == (9, 1)


def test_split_is_deterministic_under_a_seed(tmp_path: Path):
    _frame(30).to_csv(tmp_path / "t.csv", index=False)
    first, again = (sources.read("table", tmp_path / "t.csv", LABEL) for _ in range(2))
    other = sources.read("table", tmp_path / "t.csv", SourceOptions(label_column="species", test_fraction=0.25, seed=1))
    np.testing.assert_array_equal(first.test[0], again.test[0])
    assert not np.array_equal(first.test[0], other.test[0])


def test_folder_concatenates_files_in_name_order_and_a_new_file_adds_rows(tmp_path: Path):
    folder = tmp_path / "batches"
    folder.mkdir()
    _frame(6, start=6)[["species", "wet", "width", "length"]].to_csv(folder / "b.csv", index=False)
    _frame(6, start=0).to_parquet(folder / "a.parquet")
    (folder / "notes.txt").write_text("ignored")
    data = sources.read("table", folder, LABEL)
    assert data.name == "batches" and data.raw_files == (folder / "a.parquet", folder / "b.csv")
    assert data.feature_names == ("length", "width", "wet")
    assert sorted(np.concatenate([data.train[0], data.test[0]])[:, 0].tolist()) == list(range(12))
    _frame(6, start=12).to_parquet(folder / "c.pq")
    grown = sources.read("table", folder, LABEL)
    assert len(grown.train[1]) + len(grown.test[1]) == 18 and len(grown.raw_files) == 3


def test_refuses_files_whose_columns_differ(tmp_path: Path):
    _frame(6).to_csv(tmp_path / "a.csv", index=False)
    _frame(6).drop(columns="wet").to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError, match=r"b.csv: columns differ from a.csv: missing \['wet'\], extra \[\]"):
        sources.read("table", tmp_path, LABEL)


def test_refuses_a_missing_label_column_listing_the_columns(tmp_path: Path):
    _frame().to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"no label column 'label'; columns present: \['length', 'width', 'species'"):
        sources.read("table", tmp_path / "t.parquet", SourceOptions(label_column="label"))
    with pytest.raises(DataError, match=r"feature column\(s\) \['height'\] not found"):
        sources.read("table", tmp_path / "t.parquet", SourceOptions(label_column="species", feature_columns=["height"]))
    with pytest.raises(ValueError, match=r"needs data.label_column"):
        sources.read("table", tmp_path / "t.parquet", SourceOptions())


def test_refuses_nan_and_inf_features_naming_columns_and_counts(tmp_path: Path):
    frame = _frame()
    frame.loc[[1, 4], "length"] = np.nan
    frame["width"] = frame["width"].astype(float)
    frame.loc[2, "width"] = np.inf
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"t.csv: NaN, missing or infinite .* 'length' \(2 rows\), 'width' \(1 rows\)"):
        sources.read("table", tmp_path / "t.csv", LABEL)


def test_refuses_categorical_and_text_feature_columns_by_name(tmp_path: Path):
    frame = _frame()
    frame["colour"] = pd.Categorical(np.array(["red", "blue"])[np.arange(12) % 2])
    frame["note"] = "x"
    frame.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"feature column\(s\) 'colour' \(category\), 'note' \(.*\) are not numeric"):
        sources.read("table", tmp_path / "t.parquet", LABEL)
    options = SourceOptions(label_column="species", feature_columns=["length"], test_fraction=0.25)
    assert sources.read("table", tmp_path / "t.parquet", options).feature_names == ("length",)


def test_refuses_missing_and_mixed_labels(tmp_path: Path):
    frame = _frame()
    frame.loc[3, "species"] = None
    frame.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"column 'species': 1 missing value\(s\) in the label column"):
        sources.read("table", tmp_path / "t.parquet", LABEL)
    folder = tmp_path / "mixed"
    folder.mkdir()
    _frame(6).to_csv(folder / "a.csv", index=False)
    _frame(6).assign(species=np.arange(6) % 3).to_csv(folder / "b.csv", index=False)
    with pytest.raises(DataError, match="mixed: column 'species': labels must be all strings or all integers; found 0"):
        sources.read("table", folder, LABEL)


def test_refuses_a_class_too_small_for_the_split_by_name(tmp_path: Path):
    frame = _frame(9)
    frame.loc[len(frame)] = {"length": 1.0, "width": 2, "species": "rare", "wet": True}
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"class 'rare' has 1 row\(s\); a stratified split of 25% needs at least 2"):
        sources.read("table", tmp_path / "t.csv", LABEL)


def test_refuses_unreadable_files_and_image_options(tmp_path: Path):
    (tmp_path / "t.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"t.parquet: not a readable .parquet table"):
        sources.read("table", tmp_path / "t.parquet", LABEL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: folder holds no"):
        sources.read("table", tmp_path / "empty", LABEL)
    with pytest.raises(ValueError, match="the table source does not use image_size"):
        sources.read("table", tmp_path / "t.parquet", SourceOptions(label_column="species", image_size=8))
