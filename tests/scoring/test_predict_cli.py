"""`shrinkflow predict` end to end against real registered pyfunc models in a real MLflow store.

The models here are stand-ins for the lead's serving wrapper, held to the same interface: raw uint8
images (N, H, W) or a DataFrame of named feature columns in, a DataFrame of label, class_index and one
probability column per class out, bad input refused with MlflowException(INVALID_PARAMETER_VALUE), the
input contract in the MLmodel metadata. Each answers something the test can recompute from the raw row,
so a row scored under another row's id would fail."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from steps import tracking

pytestmark = pytest.mark.filterwarnings("ignore:.*Add type hints to the `predict` method")
POISON = 13  # an image of only this value is refused by the stand-in model, as a real model refuses bad input


class Brightness(mlflow.pyfunc.PythonModel):
    """Images: 'bright' when the mean pixel value is over 127.5; probabilities from the mean."""

    def predict(self, context, model_input, params=None):
        if not (isinstance(model_input, np.ndarray) and model_input.dtype == np.uint8
                and model_input.shape[1:] == (8, 8)):
            raise MlflowException.invalid_parameter_value(f"expected uint8 (N, 8, 8), got {model_input.shape}")
        if (model_input == POISON).all(axis=(1, 2)).any():
            raise MlflowException.invalid_parameter_value("an image of only 13s")
        bright = model_input.mean(axis=(1, 2)) / 255.0
        return pd.DataFrame({"label": np.where(bright > 0.5, "bright", "dark"), "class_index": (bright > 0.5) * 1,
                             "dark": 1.0 - bright, "bright": bright})


class Larger(mlflow.pyfunc.PythonModel):
    """Tables: 'a' when column a is larger than column b."""

    def predict(self, context, model_input, params=None):
        if list(model_input.dtypes) != [np.float32, np.float32]:
            raise MlflowException.invalid_parameter_value(f"expected float32 columns, got {model_input.dtypes}")
        larger = (model_input["a"] > model_input["b"]).to_numpy()
        return pd.DataFrame({"label": np.where(larger, "a", "b"), "class_index": 1 - larger,
                             "a": larger * 1.0, "b": 1.0 - larger})


IMAGES = {"kind": "image", "input_shape": [1, 8, 8], "classes": ["dark", "bright"], "feature_names": [],
          "resize": None}
TABLE = {"kind": "features", "input_shape": [2], "classes": ["a", "b"], "feature_names": ["a", "b"], "resize": None}


def register(name: str, model: mlflow.pyfunc.PythonModel, contract: dict | None) -> None:
    with mlflow.start_run(experiment_id=tracking.experiment_id("predict-tests")):
        info = mlflow.pyfunc.log_model(name="model", python_model=model, pip_requirements=["pandas"],
                                       metadata={"shrinkflow_contract": contract} if contract else None,
                                       registered_model_name=name)
    tracking.set_alias(name, "champion", int(info.registered_model_version))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("project")
    tracking.use_store(project)
    register("images", Brightness(), IMAGES)
    register("table", Larger(), TABLE)
    register("bare", Larger(), None)
    return project


def predict(root: Path, *args: str):
    return CliRunner().invoke(app, ["predict", *map(str, args), "--root", str(root)])


@pytest.fixture
def folder(tmp_path) -> Path:
    """Six 8x8 PNGs in two folders, values 0, 50, ..., 250; one undecodable file; one the model refuses."""
    root = tmp_path / "incoming"
    (root / "day2").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((8, 8), 50 * i, np.uint8)).save(root / ("day2" if i >= 3 else ".") / f"{i}.png")
    (root / "day2" / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.full((8, 8), POISON, np.uint8)).save(root / "poison.png")
    return root


def test_a_folder_is_scored_and_the_rows_not_scored_listed_by_name(root, folder, tmp_path):
    out = tmp_path / "scores" / "images.parquet"
    result = predict(root, "models:/images@champion", folder, "-o", out, "--on-error", "skip", "--batch-size", 4)
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert list(scores.columns) == ["id", "label", "class_index", "dark", "bright"]
    assert scores["id"].tolist() == ["0.png", "1.png", "2.png", "day2/3.png", "day2/4.png", "day2/5.png"]  # by path
    assert scores["bright"].tolist() == pytest.approx([50 * i / 255 for i in range(6)])
    assert scores["label"].tolist() == ["dark"] * 3 + ["bright"] * 3
    errors = pd.read_csv(tmp_path / "scores" / "images.parquet.errors.csv")
    assert errors["id"].tolist() == ["day2/broken.png", "poison.png"]
    assert "not a readable image" in errors["error"][0] and "only 13s" in errors["error"][1]
    assert "day2/broken.png" in result.stderr and "scored 6 rows" in result.stdout and "2 skipped" in result.stdout


def test_by_default_a_bad_file_fails_the_run_naming_it_and_writes_nothing(root, folder, tmp_path):
    out = tmp_path / "images.csv"
    out.write_text("yesterday's scores\n")
    result = predict(root, "models:/images@champion", folder, "-o", out)
    assert result.exit_code == 2 and "day2/broken.png: not a readable image" in result.stderr
    assert out.read_text() == "yesterday's scores\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.csv", "incoming"]


def test_a_csv_table_is_scored_with_its_id_column_and_a_nan_row_named(root, tmp_path):
    table = tmp_path / "rows.csv"
    table.write_text("key,b,a,note\nk1,1,2,x\nk2,5,,y\nk3,3,1,z\n")
    out = tmp_path / "rows.csv.out.csv"
    result = predict(root, "models:/table@champion", table, "-o", out, "--id-column", "key", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert scores[["id", "label"]].values.tolist() == [["k1", "a"], ["k3", "b"]]
    errors = pd.read_csv(Path(f"{out}.errors.csv"))
    assert errors.values.tolist() == [["k2", "row 1: column 'a' is empty (NaN)"]]


def test_a_parquet_table_is_scored_in_batches(root, tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50)})
    frame.to_parquet(tmp_path / "rows.parquet", row_group_size=7)
    result = predict(root, "models:/table@champion", tmp_path / "rows.parquet", "-o", tmp_path / "s.parquet",
                     "--batch-size", 8)
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(tmp_path / "s.parquet")
    assert scores["id"].tolist() == list(range(50))
    assert scores["label"].tolist() == np.where(frame["a"] > frame["b"], "a", "b").tolist()
    assert not (tmp_path / "s.parquet.errors.csv").exists()


@pytest.mark.parametrize(("uri", "named"), [("models:/images@nope", "has no alias @nope"),
                                            ("models:/nothing@champion", "models:/nothing@champion"),
                                            ("images@champion", "'images@champion' is not a model URI")])
def test_an_unknown_model_or_alias_is_refused_naming_it(root, folder, tmp_path, uri, named):
    result = predict(root, uri, folder, "-o", tmp_path / "s.csv")
    assert result.exit_code == 2 and named in result.stderr and not (tmp_path / "s.csv").exists()


def test_inputs_that_cannot_be_scored_at_all_are_refused_naming_them(root, folder, tmp_path):
    (tmp_path / "empty").mkdir()
    empty = predict(root, "models:/images@champion", tmp_path / "empty", "-o", tmp_path / "s.csv")
    assert empty.exit_code == 2 and "empty: no images" in empty.stderr
    wrong_kind = predict(root, "models:/table@champion", folder, "-o", tmp_path / "s.csv")
    assert wrong_kind.exit_code == 2 and "but the model takes tables of 2 named features" in \
        wrong_kind.stderr
    bare = predict(root, "models:/bare@champion", folder, "-o", tmp_path / "s.csv")
    assert bare.exit_code == 2 and "carries no 'shrinkflow_contract'" in bare.stderr
    suffix = predict(root, "models:/images@champion", folder, "-o", tmp_path / "s.txt")
    assert suffix.exit_code == 2 and "s.txt: cannot tell the output format" in suffix.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "incoming"]


def test_a_version_number_scores_an_npz_and_a_missing_input_is_refused(root, tmp_path):
    np.savez(tmp_path / "rows.npz", x=np.array([[2.0, 1.0], [0.0, 1.0]], dtype=np.float32))
    result = predict(root, "models:/table/1", tmp_path / "rows.npz", "-o", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "s.csv")[["id", "label"]].values.tolist() == [[0, "a"], [1, "b"]]
    missing = predict(root, "models:/table/1", tmp_path / "nowhere.npz", "-o", tmp_path / "t.csv")
    assert missing.exit_code == 2 and "nowhere.npz: no such file or folder" in missing.stderr


def test_nothing_scored_is_a_failure_with_the_rows_listed(root, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.png").write_bytes(b"x")
    out = tmp_path / "s.parquet"
    result = predict(root, "models:/images@champion", tmp_path / "in", "-o", out, "--on-error", "skip")
    assert result.exit_code == 2 and "no row could be scored" in result.stderr and not out.exists()
    assert pd.read_csv(tmp_path / "s.parquet.errors.csv")["id"].tolist() == ["bad.png"]
