"""A data key the chosen source does not read (class_names with image_folder, image_size with table...) is a bad key
of params.yaml: refused at validation, before any work, naming the key, the source and what the key is for; the
readers refuse the same keys from the same list (steps.sources.READS) when called directly."""

from itertools import product
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from steps import config, sources
from steps.core.layout import DATA_DIR
from steps.sources.base import SourceOptions, TokenizerOptions, refuse_options
from tests.helpers import default_params, write_params

VALUES = {"image_size": 32, "channels": "rgb", "label_column": "y", "feature_columns": ["a", "b"],
          "class_names": ["cat", "dog"], "text_column": "body", "max_length": 16, "tokenizer": {"path": "tok"}}
OPTION_VALUES = {**VALUES, "tokenizer": TokenizerOptions(path="tok")}  # what SourceOptions holds for each
NEEDS = {"table": {"label_column": "y"},
         "text": {"max_length": 16, "tokenizer": {"train": {"kind": "bpe", "vocab_size": 300}}}}
"""The keys a source cannot do without."""


def with_data(**data) -> dict:
    raw = default_params()
    raw["data"] = {"path": "somewhere", "val_size": 10, **data}
    return raw


@pytest.mark.parametrize(("source", "key", "purpose"), [
    ("image_folder", "class_names", "names labels 0..K-1 that the data gives as bare integers"),
    ("image_folder", "label_column", "names the table column that holds the labels"),
    ("table", "image_size", "resizes every image"),
    ("table", "channels", "converts every image to grayscale or rgb"),
    ("table", "class_names", "names labels 0..K-1"),
    ("idx", "label_column", "the table column that holds the labels"),
    ("idx", "feature_columns", "the table columns used as features"),
    ("arrays", "label_column", "the table column that holds the labels"),
    ("arrays", "feature_columns", "the table columns used as features"),
    ("image_folder", "text_column", "names the table column that holds the texts"),
    ("table", "max_length", "truncates and pads every text to this many tokens"),
    ("idx", "tokenizer", "loads a saved tokenizer"),
])
def test_a_key_the_source_does_not_read_is_refused_naming_key_source_and_purpose(source, key, purpose):
    raw = with_data(source=source, **{key: VALUES[key]}, **({"label_column": "y"} if source == "table" else {}))
    with pytest.raises(config.ConfigError) as err:
        config.validate(raw)
    message = str(err.value)
    assert "params.yaml: 1 invalid setting(s)" in message  # reported like every other bad key
    assert f"data.{key}: " in message and f"the {source} source does not use {key}" in message
    assert purpose in message and f"remove data.{key}" in message


def test_every_key_a_source_does_not_read_is_reported_at_once():
    with pytest.raises(config.ConfigError) as err:
        config.validate(with_data(source="table", label_column="y", image_size=32, channels="rgb",
                                  class_names=["a", "b"]))
    assert "3 invalid setting(s)" in str(err.value)
    assert all(f"data.{key}: " in str(err.value) for key in ("image_size", "channels", "class_names"))


@pytest.mark.parametrize("data", [
    {"source": "idx", "class_names": ["a", "b"], "image_size": 32, "channels": "rgb"},
    {"source": "image_folder", "image_size": 64, "channels": "grayscale"},
    {"source": "arrays", "class_names": ["a", "b"], "image_size": 16},
    {"source": "table", "label_column": "y", "feature_columns": ["a", "b"]},
    {"source": "table", "label_column": "y", "class_names": None, "image_size": None},  # null is "not set"
])
def test_keys_the_source_reads_are_accepted(data):
    cfg = config.validate(with_data(**data)).data
    assert all(getattr(cfg, key) == value for key, value in data.items())


def test_the_config_and_the_readers_refuse_the_same_keys():
    """One list: for every source and every source-specific key, validation refuses exactly when the reader
    would (arrays of features also refuse image_size and channels once read: that stays in the reader)."""
    for source, key in product(sources.SOURCES, sources.OPTIONS):
        extra = {k: v for k, v in NEEDS.get(source, {}).items() if k != key}
        try:  # stage: the data stage alone, which reads no model (text goes with an hf teacher otherwise)
            config.validate(with_data(source=source, **{key: VALUES[key]}, **extra), stage="data")
            config_refuses = False
        except config.ConfigError:
            config_refuses = True
        try:
            refuse_options(SourceOptions(**{key: OPTION_VALUES[key]}), source)
            reader_refuses = False
        except ValueError as err:
            reader_refuses = True
            assert f"the {source} source does not use {key}" in str(err)
        assert config_refuses == reader_refuses == (key not in sources.READS[source]), (source, key)


def test_an_override_that_switches_source_names_the_key_left_behind(tmp_path: Path):
    """The committed params name Fashion-MNIST's classes: -S data.source=image_folder alone leaves them behind."""
    write_params(tmp_path, default_params())
    before = (tmp_path / "params.yaml").read_text()
    with pytest.raises(config.ConfigError, match=r"data\.class_names: .*the image_folder source does not use "
                                                 r"class_names.*-S data\.class_names=null"):
        config.apply_overrides(tmp_path, ["data.source=image_folder", "data.path=photos"])
    assert (tmp_path / "params.yaml").read_text() == before
    params = config.apply_overrides(tmp_path, ["data.source=image_folder", "data.class_names=null"])
    assert params.data.source == "image_folder" and params.data.class_names is None


def test_shrinkflow_run_refuses_it_before_any_work(tmp_path: Path):
    write_params(tmp_path, with_data(source="image_folder", path=str(tmp_path / "photos")))
    before = (tmp_path / "params.yaml").read_text()
    result = CliRunner().invoke(app, ["run", "-S", "data.class_names=[a,b]", "--root", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "data.class_names" in result.output and "the image_folder source does not use" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "params.yaml").read_text() == before
    assert not (tmp_path / DATA_DIR).exists() and not (tmp_path / "mlflow.db").exists()
