import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from steps import config, data
from steps.core import datasets
from steps.core.layout import DATA_DIR, MANIFEST
from steps.sources.base import DataError
from steps.sources.idx import read_idx, write_idx
from tests.helpers import tiny_params


@pytest.fixture
def params(idx_dir) -> config.Params:
    return config.validate(tiny_params(idx_dir))


def with_data(params_dict: dict, **data_keys) -> config.Params:
    """tiny_params with its data section replaced."""
    p = {**params_dict, "data": {"val_size": data_keys.pop("val_size", 20), **data_keys}}
    return config.validate(p)


def write_png_folder(root: Path, classes: int, per_class: int, size: tuple[int, int], mode: str, ext="png") -> Path:
    rng = np.random.default_rng(classes)
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            pixels = rng.integers(0, 40, size=shape, dtype=np.uint8) + np.uint8(c * 15)
            Image.fromarray(pixels, mode).save(folder / f"{i}.{ext}")
    return root


def test_missing_raw_files_name_the_folder(tmp_path: Path):
    bad = config.validate(tiny_params(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere"):
        data.run(bad, tmp_path)


def test_labels_out_of_class_names_are_refused(tmp_path: Path, idx_dir: Path):
    for f in idx_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    labels = read_idx(idx_dir / "train-labels-idx1-ubyte.gz").copy()
    labels[3] = 12
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    bad = config.validate(tiny_params(tmp_path))  # 10 class_names in the default params, 13 classes in the files
    with pytest.raises(DataError, match="class_names lists 10 names but the data has 13 classes"):
        data.run(bad, tmp_path)


def test_split_is_seeded_disjoint_and_hashed(tmp_path: Path, params):
    manifest = data.run(params, tmp_path)
    assert {f: e["rows"] for f, e in manifest.files.items()} == {"train.npz": 500, "val.npz": 100, "test.npz": 200}
    first = (tmp_path / DATA_DIR / "train.npz").read_bytes()
    data.run(params, tmp_path)
    assert (tmp_path / DATA_DIR / "train.npz").read_bytes() == first
    splits = datasets.load_splits(tmp_path)
    assert abs(float(splits["train"].x.mean())) < 0.05  # normalised with the train split's own mean
    assert splits["train"].x.shape[1:] == (1, 28, 28)
    reseeded = config.validate({**tiny_params(params.data.path), "seed": 1})
    data.run(reseeded, tmp_path)
    assert (tmp_path / DATA_DIR / "train.npz").read_bytes() != first


def test_random_split_is_the_seeded_permutation_of_earlier_runs(tmp_path: Path, params):
    """val_split: random keeps the rows (and their order) every run before data sources had."""
    data.run(params, tmp_path)
    train_x = read_idx(Path(params.data.path) / "train-images-idx3-ubyte.gz")
    order = np.random.default_rng(params.seed).permutation(len(train_x))
    with np.load(tmp_path / DATA_DIR / "val.npz") as npz:
        np.testing.assert_array_equal(npz["images"][:, 0], train_x[order[:100]])


def test_stratified_split_keeps_class_proportions(tmp_path: Path):
    root = write_png_folder(tmp_path / "imgs", classes=3, per_class=30, size=(10, 10), mode="L")
    p = with_data(tiny_params(root), source="image_folder", path=str(root), val_size=15)
    manifest = data.run(p, tmp_path)
    with np.load(tmp_path / DATA_DIR / "val.npz") as npz:
        assert np.bincount(npz["labels"]).tolist() == [5, 5, 5]
    assert manifest.files["val.npz"]["rows"] == 15


def test_tampered_split_is_refused_naming_the_file(tmp_path: Path, params):
    data.run(params, tmp_path)
    path = tmp_path / DATA_DIR / "val.npz"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="val.npz: sha256 does not match"):
        datasets.load_splits(tmp_path)


def test_manifest_lists_raw_hashes_and_shape(tmp_path: Path, params):
    data.run(params, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert set(manifest["raw"]) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    assert manifest["raw"]["train-images-idx3-ubyte.gz"] == data.sha256(
        Path(params.data.path) / "train-images-idx3-ubyte.gz")
    assert manifest["source"] == "idx" and manifest["kind"] == "image" and manifest["input_shape"] == [1, 28, 28]
    assert manifest["classes"] == list(params.data.class_names)
    assert len(manifest["normalization"]["mean"]) == 1


def test_data_writes_the_manifest_it_returns(tmp_path: Path, params):
    result = data.run(params, tmp_path)
    assert result.files["train.npz"]["rows"] == 500
    assert json.loads((tmp_path / MANIFEST).read_text()) == result.to_dict()


@pytest.mark.parametrize("classes,size,mode,ext,image_size", [
    (3, (20, 20), "RGB", "png", None), (12, (9, 13), "L", "jpg", 16), (3, (40, 30), "RGB", "jpeg", 12)])
def test_image_folder_through_the_data_stage(tmp_path: Path, classes, size, mode, ext, image_size):
    root = write_png_folder(tmp_path / "imgs", classes, per_class=8, size=size, mode=mode, ext=ext)
    p = with_data(tiny_params(root), source="image_folder", path=str(root), val_size=classes * 2,
                  image_size=image_size, test_fraction=0.25)
    manifest = data.run(p, tmp_path)
    channels = 3 if mode == "RGB" else 1
    side = image_size or size[0]
    assert manifest.input_shape == [channels, side, side] and len(manifest.classes) == classes
    assert manifest.classes[0] == "class_00" and len(manifest.normalization["mean"]) == channels
    assert len(manifest.raw) == classes * 8
    splits = datasets.load_splits(tmp_path)
    assert splits["train"].x.shape[1:] == (channels, side, side)
    assert sum(e["rows"] for e in manifest.files.values()) == classes * 8


def test_a_new_image_changes_the_raw_digest(tmp_path: Path):
    root = write_png_folder(tmp_path / "imgs", 3, per_class=6, size=(8, 8), mode="L")
    p = with_data(tiny_params(root), source="image_folder", path=str(root), val_size=3)
    before = data.run(p, tmp_path).raw_sha256
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(root / "class_01" / "new.png")
    assert data.run(p, tmp_path).raw_sha256 != before


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_table_is_standardised_with_training_statistics(tmp_path: Path, suffix):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(5, 2, 120), "b": rng.normal(-3, 0.5, 120),
                          "kind": np.repeat(["x", "y", "z"], 40)})
    path = tmp_path / f"t.{suffix}"
    frame.to_parquet(path) if suffix == "parquet" else frame.to_csv(path, index=False)
    p = with_data(tiny_params(path), source="table", path=str(path), label_column="kind", val_size=12)
    manifest = data.run(p, tmp_path)
    assert manifest.kind == "features" and manifest.input_shape == [2] and manifest.classes == ["x", "y", "z"]
    assert manifest.feature_names == ["a", "b"]
    splits = datasets.load_splits(tmp_path)
    train = splits["train"].x
    assert train.shape[1] == 2 and float(train.mean(0).abs().max()) < 1e-5
    assert abs(float(train.std(0, unbiased=False).mean()) - 1) < 1e-4
    with np.load(tmp_path / DATA_DIR / "train.npz") as npz:
        assert npz["features"].dtype == np.float32
        np.testing.assert_allclose(manifest.normalization["mean"], npz["features"].mean(0), rtol=1e-5)


def test_arrays_npz_through_the_data_stage(tmp_path: Path):
    rng = np.random.default_rng(1)
    path = tmp_path / "set.npz"
    np.savez(path, x=rng.integers(0, 255, (60, 3, 12, 12), dtype=np.uint8), y=np.arange(60) % 4)
    p = with_data(tiny_params(path), source="arrays", path=str(path), val_size=8,
                  class_names=["a", "b", "c", "d"])
    manifest = data.run(p, tmp_path)
    assert manifest.input_shape == [3, 12, 12] and manifest.classes == ["a", "b", "c", "d"]
    assert manifest.dataset == "set" and list(manifest.raw) == ["set.npz"]


def test_a_class_too_small_for_the_split_is_refused_by_name(tmp_path: Path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"f": range(23), "y": ["common"] * 21 + ["rare"] * 2}).to_csv(path, index=False)
    p = with_data(tiny_params(path), source="table", path=str(path), label_column="y", val_size=4)
    with pytest.raises(DataError, match="'rare' has 1 row"):
        data.run(p, tmp_path)


def test_raw_dir_is_read_as_path():
    """The key before data sources existed, still accepted from users' params.yaml; it wins over path."""
    raw = tiny_params(Path("/elsewhere"))
    raw["data"]["raw_dir"] = "/some/where"
    assert config.validate(raw).data.path == "/some/where"


def test_a_test_limit_samples_every_class_of_a_test_split_listed_class_by_class(tmp_path: Path):
    """Folder and table sources list their test rows class by class: a stratified project's test_limit takes a
    seeded sample of them (in the source's order), not the first class."""
    from steps.sources.base import RawData

    features = np.arange(200, dtype=np.float32).reshape(100, 2)
    labels = np.repeat(np.arange(2), 50)  # class 0's rows, then class 1's
    raw = RawData("features", (features, labels), (features, labels), ("a", "b"), (tmp_path / "t.csv",), "t",
                  ("x0", "x1"))
    cfg = config.DataConfig(source="table", path="t.csv", label_column="y", val_size=10, test_limit=20,
                            val_split="stratified")
    x, y = data.split(raw, cfg, seed=0)["test"]
    assert len(y) == 20 and np.bincount(y).tolist() == [10, 10]  # stratified: each class its share
    assert (np.diff(x[:, 0]) > 0).all()  # in the source's order
    assert data.split(raw, cfg.model_copy(update={"val_split": "random"}), seed=0)["test"][1].tolist() == [0] * 20


@pytest.mark.parametrize("seed", range(20))
def test_a_stratified_sample_keeps_each_class_its_share_and_a_rare_class_a_row(seed: int):
    from steps.sources.labels import stratified_sample

    labels = np.repeat(np.arange(3), [495, 5, 100])
    chosen = stratified_sample(labels, 50, seed)
    counts = np.bincount(labels[chosen], minlength=3)
    assert len(chosen) == 50 and len(set(chosen.tolist())) == 50 and (np.diff(chosen) > 0).all()
    assert counts[1] >= 1 and abs(counts[0] - 41) <= 1 and abs(counts[2] - 8) <= 1
