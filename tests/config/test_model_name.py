"""promote.model_name: as given when set; when null, `<dataset>-student` from the data manifest, sanitised to a name
MLflow registers and the registry lock can put in a file name (PromoteConfig.resolved_model_name)."""

from pathlib import Path

import numpy as np
import pytest
from mlflow.utils.validation import _validate_model_name

from steps import config, data
from steps.config.promote import default_model_name
from steps.core.datasets import read_manifest
from tests.helpers import REPO, default_params, tiny_params


def promote_config(**keys) -> config.PromoteConfig:
    raw = default_params()
    raw["promote"].pop("model_name")
    raw["promote"].update(keys)
    return config.validate(raw).promote


def test_unset_the_name_comes_from_the_data_stages_manifest(tmp_path: Path):
    folder = tmp_path / "My Données (v2)"  # an arrays folder: the dataset is named after it
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.integers(0, 255, (40, 1, 8, 8), dtype=np.uint8))
    np.save(folder / "y.npy", np.arange(40) % 2)
    raw = tiny_params(folder)
    raw["data"] = {"source": "arrays", "path": str(folder), "val_size": 4}
    raw["promote"].pop("model_name")
    params = config.validate(raw)
    data.run(params, tmp_path)
    manifest = read_manifest(tmp_path)
    assert manifest["dataset"] == "My Données (v2)"
    assert params.promote.model_name is None
    assert params.promote.resolved_model_name(manifest) == "my-donnees-v2-student"


def test_set_the_name_is_used_as_given_whatever_the_data():
    assert config.load(REPO).promote.resolved_model_name({"dataset": "iris"}) == "fashion-student"
    assert promote_config(model_name="Churn.v2").resolved_model_name({"dataset": "iris"}) == "Churn.v2"


@pytest.mark.parametrize(("dataset", "expected"), [
    ("fashion-mnist", "fashion-mnist-student"),
    ("Fashion MNIST (v2)", "fashion-mnist-v2-student"),
    ("patients_2024.parquet-export", "patients_2024.parquet-export-student"),
    ("models:/a/b", "models-a-b-student"),  # MLflow refuses '/' and ':'
    ("..", "data-student"),  # nothing of the name is left
    ("猫", "data-student"),
    (" -_.x._- ", "x-student"),
    ("a" * 300, "a" * 100 + "-student"),
])
def test_the_derived_name_is_sanitised(dataset, expected):
    name = default_model_name(dataset)
    assert name == expected
    _validate_model_name(name)  # MLflow's own rule for a registered model's name: raises when broken
    assert promote_config().resolved_model_name({"dataset": dataset}) == name
    assert config.PromoteConfig.model_validate({**promote_config().model_dump(), "model_name": name}).model_name == name


def test_a_manifest_without_a_dataset_name_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"no dataset name \(key 'dataset'.*set promote\.model_name"):
        promote_config().resolved_model_name({"classes": ["a", "b"]})


def test_a_set_name_still_follows_the_registry_rules():
    with pytest.raises(config.ConfigError, match="promote.model_name"):
        promote_config(model_name="team/model")
