import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from steps import config, data
from steps.core import datasets
from steps.core.layout import DATA_DIR, MANIFEST
from steps.data import write_idx
from tests.helpers import synthetic_images, tiny_params


@pytest.fixture
def params(idx_dir) -> config.Params:
    return config.validate(tiny_params(idx_dir))


def test_read_idx_round_trips(tmp_path: Path):
    images, _ = synthetic_images(5, seed=0)
    write_idx(tmp_path / "x.gz", images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x.gz"), images)


def test_read_idx_refuses_bad_magic_and_truncation(tmp_path: Path):
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05"))
    with pytest.raises(data.DataError, match="bad.gz: not an IDX file"):
        data.read_idx(tmp_path / "bad.gz")
    images, _ = synthetic_images(4, seed=0)
    write_idx(tmp_path / "ok.gz", images)
    raw = gzip.decompress((tmp_path / "ok.gz").read_bytes())
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(data.DataError, match="short.gz: IDX header promises"):
        data.read_idx(tmp_path / "short.gz")


def test_missing_raw_files_say_where_to_get_them(tmp_path: Path, params):
    bad = config.validate(tiny_params(tmp_path / "nowhere"))
    with pytest.raises(data.DataError, match="dataset-fashion-mnist"):
        data.run(bad, tmp_path)


def test_labels_out_of_range_are_refused(tmp_path: Path, idx_dir: Path):
    for f in idx_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    labels = data.read_idx(idx_dir / "train-labels-idx1-ubyte.gz").copy()
    labels[3] = 12
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(data.DataError, match="label 12 out of range"):
        data.read_raw(tmp_path)


def test_split_is_seeded_disjoint_and_hashed(tmp_path: Path, params):
    manifest = data.run(params, tmp_path)
    assert {f: e["rows"] for f, e in manifest.files.items()} == {"train.npz": 500, "val.npz": 100, "test.npz": 200}
    first = (tmp_path / DATA_DIR / "train.npz").read_bytes()
    data.run(params, tmp_path)
    assert (tmp_path / DATA_DIR / "train.npz").read_bytes() == first
    splits = datasets.load_splits(tmp_path)
    assert abs(float(splits["train"].x.mean())) < 0.05  # normalised with the train split's own mean
    reseeded = config.validate({**tiny_params(params.data.raw_dir), "seed": 1})
    data.run(reseeded, tmp_path)
    assert (tmp_path / DATA_DIR / "train.npz").read_bytes() != first


def test_tampered_split_is_refused_naming_the_file(tmp_path: Path, params):
    data.run(params, tmp_path)
    path = tmp_path / DATA_DIR / "val.npz"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match="val.npz: sha256 does not match"):
        datasets.load_splits(tmp_path)


def test_manifest_lists_raw_hashes(tmp_path: Path, params):
    data.run(params, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert set(manifest["raw"]) == set(data.RAW_FILES.values())
    assert manifest["raw"]["train-images-idx3-ubyte.gz"] == data.sha256(
        Path(params.data.raw_dir) / "train-images-idx3-ubyte.gz")


def test_data_writes_the_manifest_it_returns(tmp_path: Path, params):
    result = data.run(params, tmp_path)
    assert result.files["train.npz"]["rows"] == 500
    assert json.loads((tmp_path / MANIFEST).read_text()) == result.to_dict()
