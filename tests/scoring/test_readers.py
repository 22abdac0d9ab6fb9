"""Readers of raw inputs for batch scoring, on tiny files written here: ids, batches, the model's input form,
and every unreadable row named."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from steps.scoring.contract import ContractMissing, from_metadata
from steps.serving.contract import Contract
from steps.scoring.readers import open_input
from steps.sources.base import DataError
from steps.sources.idx import write_idx

GRAY_8 = Contract("image", (1, 8, 8), ("dark", "bright"))
RGB_8 = Contract("image", (3, 8, 8), ("dark", "bright"))
RESIZED_8 = Contract("image", (1, 8, 8), ("dark", "bright"), resize=8)
TABLE = Contract("features", (2,), ("no", "yes"), feature_names=("a", "b"))


def read_all(path, contract, batch_size=2, id_column=None):
    source = open_input(path, contract, batch_size, id_column)
    batches = list(source.batches)
    return source, batches


def pixels(seed: int, shape=(8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    """root/a.png, root/sub/b.png, root/sub/deeper/c.jpg (RGB), root/sub/broken.png, and files that are not inputs."""
    root = tmp_path / "images"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    Image.fromarray(pixels(0)).save(root / "a.png")
    Image.fromarray(pixels(1)).save(root / "sub" / "b.png")
    Image.fromarray(pixels(2, (8, 8, 3))).save(root / "sub" / "deeper" / "c.JPG", quality=95)
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "notes.txt").write_text("not an image")
    Image.fromarray(pixels(3)).save(root / ".hidden" / "skipped.png")
    return root


def test_a_folder_is_read_recursively_in_batches_with_relative_paths_as_ids(folder):
    source, batches = read_all(folder, GRAY_8)
    assert source.total == 4 and [b.rows for b in batches] == [2, 2]
    ids = [i for b in batches for i in b.ids]
    assert ids == ["a.png", "sub/b.png", "sub/deeper/c.JPG"]
    assert batches[0].data.shape == (2, 8, 8) and batches[0].data.dtype == np.uint8
    np.testing.assert_array_equal(batches[0].data[1], pixels(1))
    with Image.open(folder / "sub" / "deeper" / "c.JPG") as rgb:  # RGB -> L as the data stage converts it
        np.testing.assert_array_equal(batches[1].data[0], np.asarray(rgb.convert("L")))
    [(bad, why)] = batches[1].errors
    assert bad == "sub/broken.png" and "not a readable image" in why


def test_three_channel_models_get_channels_last_images(folder):
    _, batches = read_all(folder, RGB_8, batch_size=8)
    assert batches[0].data.shape == (3, 8, 8, 3)
    gray = batches[0].data[0]
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 0] == pixels(0)).all()


def test_another_size_is_that_files_error_without_resize_and_resized_with_it(tmp_path):
    Image.fromarray(pixels(0)).save(tmp_path / "fits.png")
    Image.fromarray(pixels(1, (16, 12))).save(tmp_path / "large.png")  # 12 wide, 16 high
    _, [batch] = read_all(tmp_path, GRAY_8)
    assert batch.ids == ["fits.png"]
    [(name, why)] = batch.errors
    assert name == "large.png" and "12x16" in why and "8x8" in why
    _, [batch] = read_all(tmp_path, RESIZED_8)
    expected = np.asarray(Image.fromarray(pixels(1, (16, 12))).resize((8, 8), Image.Resampling.BILINEAR))
    assert batch.ids == ["fits.png", "large.png"] and not batch.errors
    np.testing.assert_array_equal(batch.data[1], expected)


def test_an_empty_folder_is_refused_by_name(tmp_path):
    (tmp_path / "only-text").mkdir()
    (tmp_path / "only-text" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="only-text: no images"):
        open_input(tmp_path / "only-text", GRAY_8, 4)


def test_images_for_a_table_model_are_refused_naming_both(folder):
    with pytest.raises(DataError, match=r"a folder of 4 images, but the model takes tables of 2 named features"):
        open_input(folder, TABLE, 4)


@pytest.mark.parametrize("name", ["new-images-idx3-ubyte", "new-images-idx3-ubyte.gz"])
def test_an_idx_file_is_streamed_with_row_indices_as_ids(tmp_path, name):
    images = np.stack([pixels(i) for i in range(5)])
    write_idx(tmp_path / name, images)
    source, batches = read_all(tmp_path / name, GRAY_8)
    assert source.total == 5 and [b.ids for b in batches] == [[0, 1], [2, 3], [4]]
    np.testing.assert_array_equal(np.concatenate([b.data for b in batches]), images)


def test_a_truncated_idx_file_is_refused_where_it_ends(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    write_idx(path, np.stack([pixels(i) for i in range(5)]))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: 16 + 3 * 64 + 10]))
    source = open_input(path, GRAY_8, 2)
    with pytest.raises(DataError, match="ends after 3 of the 5 images"):
        list(source.batches)


def test_an_idx_file_of_another_size_is_refused_without_resize(tmp_path):
    write_idx(tmp_path / "x-idx3-ubyte", np.zeros((2, 10, 10), np.uint8))
    with pytest.raises(DataError, match="10x10 pixels.*model takes 8x8"):
        open_input(tmp_path / "x-idx3-ubyte", GRAY_8, 2)


def test_an_npz_of_features_names_the_row_and_column_of_a_nan(tmp_path):
    x = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]])
    np.savez(tmp_path / "rows.npz", x=x, y=np.array([0, 1, 0]))  # labels beside the samples are left alone
    source, batches = read_all(tmp_path / "rows.npz", TABLE, batch_size=8)
    [batch] = batches
    assert source.total == 3 and batch.ids == [0, 2]
    assert batch.errors == [(1, "NaN or infinite value in column(s) ['b']")]
    assert list(batch.data.columns) == ["a", "b"] and batch.data.dtypes.tolist() == [np.float32] * 2
    assert batch.data["a"].tolist() == [1.0, 5.0]


def test_npz_float_images_in_0_1_are_scaled_as_the_data_stage_scales_them(tmp_path):
    images = np.stack([pixels(i) for i in range(3)]).astype(np.float32) / 255.0
    images[2, 0, 0] = np.nan
    np.savez(tmp_path / "images.npz", images=images)
    _, [batch] = read_all(tmp_path / "images.npz", GRAY_8, batch_size=8)
    assert batch.ids == [0, 1] and batch.errors == [(2, "NaN or infinite pixel values")]
    np.testing.assert_array_equal(batch.data[1], pixels(1))


def test_an_npz_with_two_sample_arrays_is_refused_naming_them(tmp_path):
    np.savez(tmp_path / "both.npz", x=np.zeros((2, 2)), x_test=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"holds the arrays \['x', 'x_test'\]"):
        open_input(tmp_path / "both.npz", TABLE, 2)


def test_a_parquet_table_streams_its_feature_columns_and_names_bad_rows(tmp_path):
    frame = pd.DataFrame({"key": ["r0", "r1", "r2", None, "r4"], "b": [1.0, np.inf, 3.0, 4.0, 5.0],
                          "a": [10, 11, 12, 13, 14], "other": list("vwxyz")})
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=2)
    source, batches = read_all(tmp_path / "t.parquet", TABLE, id_column="key")
    assert source.total == 5 and [b.rows for b in batches] == [2, 2, 1]
    assert [i for b in batches for i in b.ids] == ["r0", "r2", "r4"]
    errors = [e for b in batches for e in b.errors]
    assert errors == [("r1", "row 1: column 'b' is inf"), (3, "row 3: no id in column 'key'")]
    assert list(batches[0].data.columns) == ["a", "b"] and batches[0].data.iloc[0].tolist() == [10.0, 1.0]


def test_a_table_without_a_feature_column_is_refused_naming_it(tmp_path):
    pd.DataFrame({"a": [1.0], "c": [2.0]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"no feature column\(s\) \['b'\]"):
        open_input(tmp_path / "t.parquet", TABLE, 2)


def test_an_empty_parquet_table_is_refused(tmp_path):
    pd.DataFrame({"a": pd.Series([], dtype=float), "b": pd.Series([], dtype=float)}).to_parquet(tmp_path / "t.pq")
    with pytest.raises(DataError, match="t.pq: no rows"):
        open_input(tmp_path / "t.pq", TABLE, 2)


def test_a_csv_table_names_nan_and_text_cells_and_keeps_ids_as_written(tmp_path):
    (tmp_path / "t.csv").write_text("id,a,b\n007,1,2\n008,,3\n009,abc,4\n010,5,6\n")
    source, batches = read_all(tmp_path / "t.csv", TABLE, batch_size=3, id_column="id")
    assert source.total is None and [b.rows for b in batches] == [3, 1]
    assert [i for b in batches for i in b.ids] == ["007", "010"]
    assert [e for b in batches for e in b.errors] == [("008", "row 1: column 'a' is empty (NaN)"),
                                                     ("009", "row 2: column 'a': 'abc' is not a number")]


@pytest.mark.parametrize("text", ["", "a,b\n"])
def test_an_empty_csv_is_refused(tmp_path, text):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError, match="t.csv: (empty|no rows)"):
        open_input(tmp_path / "t.csv", TABLE, 2)


def test_an_input_of_unknown_kind_or_missing_is_refused_by_name(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="x.json: cannot tell what it holds"):
        open_input(tmp_path / "x.json", TABLE, 2)
    with pytest.raises(DataError, match="nowhere: no such file"):
        open_input(tmp_path / "nowhere", TABLE, 2)


def test_a_model_without_a_contract_is_refused_naming_it():
    with pytest.raises(ContractMissing, match="models:/m@champion carries no 'shrinkflow_contract'"):
        from_metadata({}, "models:/m@champion")
    raw = {"kind": "image", "input_shape": [1, 8, 8], "classes": ["a"], "feature_names": [], "resize": None,
           "mean": [0.5]}
    assert from_metadata({"shrinkflow_contract": raw}, "m") == Contract("image", (1, 8, 8), ("a",), mean=(0.5,))
    with pytest.raises(ContractMissing, match="m: malformed input contract"):
        from_metadata({"shrinkflow_contract": {"kind": "image"}}, "m")
