"""Property-based: any bad params.yaml or -S override is refused before work, naming the key and value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steps import config
from tests.helpers import default_params, write_params

BASE = default_params()
SECTIONS = [k for k, v in BASE.items() if isinstance(v, dict)]
OPTIONAL_SECTIONS = ("resources",)
"""Sections whose defaults are today's behaviour (one process, fp32): left out, they are not missing."""
RANGES = {  # key path -> a strategy of values the schema must refuse
    ("prune", "target_sparsity"): st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0)),
    ("distill", "temperature"): st.floats(max_value=0.0),
    ("distill", "alpha"): st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0 + 1e-9)),
    ("teacher", "train", "epochs"): st.integers(max_value=0),
    ("prune", "rounds"): st.integers(max_value=0),
    ("threads",): st.integers(max_value=0),
    ("data", "val_size"): st.integers(max_value=0),
    ("promote", "min_accuracy"): st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0 + 1e-9)),
}
WRONG_TYPES = st.one_of(st.text(min_size=1).filter(lambda s: not s.strip().lstrip("-").replace(".", "").isdigit()),
                        st.lists(st.integers(), min_size=1), st.dictionaries(st.text(min_size=1), st.integers(),
                                                                                min_size=1))
INT_OR_FLOAT_KEYS = [path for path in RANGES]


def set_path(tree: dict, path: tuple[str, ...], value) -> None:
    for part in path[:-1]:
        tree = tree[part]
    tree[path[-1]] = value


def refused(raw) -> str:
    with pytest.raises(config.ConfigError) as err:
        config.validate(raw)
    return str(err.value)


@settings(max_examples=60, deadline=None)
@given(section=st.sampled_from(SECTIONS), key=st.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True))
def test_unknown_keys_are_named(section, key):
    raw = copy.deepcopy(BASE)
    if key in raw[section]:
        return
    raw[section][key] = 1
    assert f"{section}.{key}: unknown key" in refused(raw)


@settings(max_examples=80, deadline=None)
@given(data=st.data(), path=st.sampled_from(list(RANGES)))
def test_out_of_range_values_are_named(data, path):
    value = data.draw(RANGES[path])
    raw = copy.deepcopy(BASE)
    set_path(raw, path, value)
    message = refused(raw)
    assert ".".join(path) in message


@settings(max_examples=60, deadline=None)
@given(path=st.sampled_from(INT_OR_FLOAT_KEYS), value=WRONG_TYPES)
def test_wrong_types_are_named(path, value):
    raw = copy.deepcopy(BASE)
    set_path(raw, path, value)
    assert ".".join(path) in refused(raw)


@settings(max_examples=20, deadline=None)
@given(section=st.sampled_from([s for s in SECTIONS if s not in OPTIONAL_SECTIONS]))
def test_missing_sections_are_named(section):
    raw = copy.deepcopy(BASE)
    del raw[section]
    assert f"{section}: required key is missing" in refused(raw)


def test_empty_feature_layer_list_with_weight_is_refused():
    raw = copy.deepcopy(BASE)
    raw["distill"]["hints"] = {"weight": 1.0, "layers": []}
    assert "distill.hints" in refused(raw)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), path=st.sampled_from(list(RANGES)))
def test_bad_overrides_are_refused_and_change_nothing(tmp_path: Path, data, path):
    write_params(tmp_path, BASE)
    before = (tmp_path / "params.yaml").read_text()
    value = data.draw(RANGES[path])
    with pytest.raises(config.ConfigError) as err:
        config.apply_overrides(tmp_path, [f"{'.'.join(path)}={value!r}"])
    assert ".".join(path) in str(err.value)
    assert (tmp_path / "params.yaml").read_text() == before
