"""The whole pipeline, stage functions in order, on data sources other than IDX; bad inputs refused early."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from PIL import Image

from steps import config, promote, tracking
from steps.core.dag import STAGE_NAMES
from steps.core.datasets import raw_split, read_manifest
from steps.promote.contracts import ContractMismatch
from steps.sources.images import conform_image
from steps.sources.base import DataError
from tests.helpers import tiny_params, write_params


LONGER = {"epochs": 8, "batch_size": 16, "lr": 0.003}  # tiny sets: enough steps for every class to be learnt
CNN = {"name": "cnn", "channels": [8, 16], "hidden": [32], "batch_norm": True}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One MLflow store for the bad-input cases (creating a store costs seconds)."""
    root = tmp_path_factory.mktemp("bad-inputs")
    tracking.use_store(root)
    tracking.aliases("none")
    return root


def project(tmp_path: Path, data: dict, **sections) -> tuple[Path, config.Params]:
    """A temp project with its own MLflow store and tiny params, the data section replaced."""
    root = tmp_path / "project"
    root.mkdir()
    raw = copy.deepcopy(tiny_params(tmp_path, experiment="sources-flow"))
    raw["data"] = {"val_size": 12, **data}
    raw["promote"]["model_name"] = f"sources-{tmp_path.name}"[:60]
    raw["quantize"]["methods"] = []  # int8 has its own tests; here it would only cost time
    for section, values in sections.items():
        raw[section] = {**raw[section], **values}
    write_params(root, raw)
    tracking.use_store(root)
    return root, config.validate(raw)


def run_pipeline(root: Path, params: config.Params, until: str = "promote"):
    result = None
    for name in STAGE_NAMES[: STAGE_NAMES.index(until) + 1]:
        result = importlib.import_module(f"steps.{name}").run(params, root)
    return result


def rgb_folder(root: Path, classes: int = 3, per_class: int = 30, size: int = 20) -> Path:
    """Each class is one dominant colour plus noise: learnable in a couple of epochs."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            pixels[..., c % 3] += 150
            Image.fromarray(pixels, "RGB").save(root / f"c{c}" / f"{i}.png")
    return root


def blob_table(path: Path, rows: int = 240) -> Path:
    rng = np.random.default_rng(1)
    labels = np.arange(rows) % 3
    frame = pd.DataFrame({f"f{j}": rng.normal(labels * (j + 1), 0.3) for j in range(4)})
    frame["species"] = np.array(["setosa", "versicolor", "virginica"])[labels]
    frame.to_parquet(path)
    return path


def test_rgb_image_folder_end_to_end(tmp_path: Path):
    folder = rgb_folder(tmp_path / "photos")
    student = {"name": "cnn", "channels": [4, 8], "hidden": [16], "batch_norm": True}
    root, params = project(tmp_path, {"source": "image_folder", "path": str(folder), "image_size": 16},
                           distill={"student": student, "train": LONGER}, teacher={"train": LONGER,
                                                                                   "arch": CNN})
    decision = run_pipeline(root, params)
    manifest = read_manifest(root)
    assert manifest["input_shape"] == [3, 16, 16] and manifest["classes"] == ["c0", "c1", "c2"]
    assert decision.promoted, decision.reason
    assert decision.accuracy > 0.6  # chance is 1/3
    tags = tracking.model_version(params.promote.model_name, decision.version).tags
    assert tags["shrinkflow.accuracy"] == f"{decision.accuracy:.6f}"
    # Served: the photos as their owner has them (20x20 files), resized by the model as the data stage resized
    # them: encoded bytes, and pixels (N, H, W, C), answer as the data stage's own 16x16 conversion does.
    served = tracking.load_predictor(params.promote.model_name, decision.version)
    files = sorted(folder.rglob("*.png"))[::9]
    as_data_stage = np.stack([conform_image(Image.open(f), 3, 16) for f in files])
    expected = served.predict(as_data_stage)["class_index"].tolist()
    encoded = np.array([f.read_bytes() for f in files], dtype=object)
    assert served.predict(encoded)["class_index"].tolist() == expected
    assert served.predict(np.stack([np.asarray(Image.open(f)) for f in files]))["class_index"].tolist() == expected


def test_table_end_to_end_with_mlps(tmp_path: Path):
    table = blob_table(tmp_path / "flowers.parquet")
    mlp = {"name": "mlp", "channels": [], "hidden": [32], "batch_norm": False}
    root, params = project(tmp_path, {"source": "table", "path": str(table), "label_column": "species"},
                           teacher={"arch": mlp, "train": LONGER}, distill={"train": LONGER})
    decision = run_pipeline(root, params)
    assert read_manifest(root)["kind"] == "features"
    assert decision.promoted, decision.reason
    assert decision.accuracy > 0.8
    # Served: the raw (unscaled) rows with their named columns, in any order
    served = tracking.load_predictor(params.promote.model_name, decision.version)
    x, y = raw_split(root, "test")
    rows = pd.DataFrame(x, columns=read_manifest(root)["feature_names"])
    answers = served.predict(rows[["f3", "f1", "f0", "f2"]])
    assert int((answers["class_index"].to_numpy() == y).sum()) == round(decision.accuracy * len(y))
    assert set(answers["label"]) <= {"setosa", "versicolor", "virginica"}
    with pytest.raises(MlflowException, match=r"missing inputs.*f1"):
        served.predict(rows.drop(columns="f1"))
    rows.loc[1, "f2"] = np.nan
    with pytest.raises(MlflowException, match=r"\['f2'\] hold NaN"):
        served.predict(rows)
    # One registered model, one contract: an image model under the same name is refused before registering
    folder = rgb_folder(tmp_path / "photos")
    cnn = {"name": "cnn", "channels": [4, 8], "hidden": [16], "batch_norm": True}
    (tmp_path / "images").mkdir()
    images = project(tmp_path / "images", {"source": "image_folder", "path": str(folder), "image_size": 8},
                     teacher={"arch": cnn, "train": {**LONGER, "epochs": 1}},
                     distill={"student": cnn, "train": {**LONGER, "epochs": 1}})[1]
    images = images.model_copy(update={"promote": params.promote})
    tracking.use_store(root)  # the table's project and store, now holding images
    run_pipeline(root, images, until="evaluate")
    with pytest.raises(ContractMismatch, match=r"kind: image vs features.*promote.model_name.*replace_contract"):
        run_pipeline(root, images)
    versions = MlflowClient().search_model_versions(f"name = '{params.promote.model_name}'")
    assert [int(v.version) for v in versions] == [decision.version]
    # ... unless the new line is started on purpose: judged as if there were no champion (it cannot face one)
    replacing = images.model_copy(update={"promote": images.promote.model_copy(update={"replace_contract": True})})
    new_line = promote.run(replacing, root)
    assert new_line.promoted and new_line.incumbent_version is None and new_line.version == decision.version + 1


def test_a_conv_arch_on_a_table_is_refused_naming_source_and_arch(tmp_path: Path):
    table = blob_table(tmp_path / "flowers.parquet")
    root, params = project(tmp_path, {"source": "table", "path": str(table), "label_column": "species"})
    with pytest.raises(ValueError, match=r"arch.name 'cnn' needs images, but data.source 'table'"):
        run_pipeline(root, params, until="teacher")


def _unreadable_image(tmp: Path) -> dict:
    folder = rgb_folder(tmp / "imgs", per_class=4, size=8)
    (folder / "c1" / "broken.png").write_bytes(b"not a png at all")
    return {"source": "image_folder", "path": str(folder)}


def _mixed_sizes(tmp: Path) -> dict:
    folder = rgb_folder(tmp / "imgs", per_class=4, size=8)
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(folder / "c2" / "odd.png")
    return {"source": "image_folder", "path": str(folder)}


def _empty_class(tmp: Path) -> dict:
    folder = rgb_folder(tmp / "imgs", per_class=4, size=8)
    (folder / "hollow").mkdir()
    return {"source": "image_folder", "path": str(folder)}


def _missing_label_column(tmp: Path) -> dict:
    return {"source": "table", "path": str(blob_table(tmp / "t.parquet")), "label_column": "kind"}


def _nan_feature(tmp: Path) -> dict:
    path = tmp / "t.csv"
    frame = pd.read_parquet(blob_table(tmp / "t.parquet"))
    frame.loc[5, "f2"] = np.nan
    frame.to_csv(path, index=False)
    return {"source": "table", "path": str(path), "label_column": "species"}


def _float_labels(tmp: Path) -> dict:
    path = tmp / "arrays.npz"
    np.savez(path, x=np.zeros((40, 1, 6, 6), np.uint8), y=np.linspace(0, 1.5, 40))
    return {"source": "arrays", "path": str(path)}


@pytest.mark.parametrize("make,message", [
    (_unreadable_image, r"broken\.png"),
    (_mixed_sizes, r"image_size"),
    (_empty_class, r"hollow"),
    (_missing_label_column, r"'kind'"),
    (_nan_feature, r"f2"),
    (_float_labels, r"arrays\.npz.*integers"),
])
def test_bad_input_is_refused_naming_it_and_nothing_is_registered(store: Path, tmp_path: Path, make, message):
    raw = tiny_params(tmp_path, experiment="sources-flow")
    raw["data"] = {"val_size": 4, **make(tmp_path)}
    params, root = config.validate(raw), store
    tracking.use_store(root)
    with pytest.raises(DataError, match=message):
        run_pipeline(root, params)
    assert not (root / "data").exists() or not any((root / "data").rglob("*.npz"))
    assert tracking.aliases(params.promote.model_name) == {}
