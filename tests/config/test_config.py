from pathlib import Path

import pytest
import yaml

from steps import config
from tests.helpers import REPO, default_params, write_params


def test_committed_params_yaml_is_valid():
    params = config.load(REPO)
    assert params.promote.model_name
    assert 0 < params.prune.target_sparsity < 1


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p["teacher"]["train"].update(epoks=3), "teacher.train.epoks: unknown key"),
        (lambda p: p.update(extra_section={}), "extra_section: unknown key"),
        (lambda p: p["teacher"]["train"].update(epochs="three"), "teacher.train.epochs"),
        (lambda p: p["prune"].update(target_sparsity=1.0), "prune.target_sparsity"),
        (lambda p: p["prune"].update(target_sparsity=-0.1), "prune.target_sparsity"),
        (lambda p: p["distill"].update(temperature=0), "distill.temperature"),
        (lambda p: p["distill"].update(alpha=1.5), "distill.alpha"),
        (lambda p: p["prune"].update(schedule="exponential"), "prune.schedule"),
        (lambda p: p.pop("evaluate"), "evaluate: required key is missing"),
        (lambda p: p["teacher"]["arch"].update(channels=[]), "teacher.arch"),
        (lambda p: p["quantize"].update(methods=["dynamic"], deploy="static"),
         "quantize: Value error, deploy: static needs 'static' in methods"),
        (lambda p: p["quantize"].update(methods=["static", "static"]), "methods lists a method twice"),
        (lambda p: p["quantize"].update(methods=["int4"]), "quantize.methods.0"),
        (lambda p: p["export"].update(exporter="dynamo", opset=17), "the dynamo exporter needs opset >= 18"),
        (lambda p: p["evaluate"].update(latency_backend="tensorrt"), "evaluate.latency_backend"),
        (lambda p: p["target"].update(latency_ms=0.2), "target.latency_ms: unknown key"),
        (lambda p: p["target"].update(latency_p95_ms=-1), "target.latency_p95_ms"),
        (lambda p: p["target"]["search"].update(widths=[0.5, 1.5]), "target.search.widths: Value error, every width "
                                                                     "must be a fraction in (0, 1), got [1.5]"),
        (lambda p: p["target"]["search"].update(precisions=["int4"]), "target.search.precisions.0"),
        (lambda p: p["target"]["search"].update(search_repeats=10), "target.search.search_repeats"),
    ],
)
def test_bad_values_are_refused_naming_the_key(mutate, expected):
    raw = default_params()
    mutate(raw)
    with pytest.raises(config.ConfigError) as err:
        config.validate(raw)
    assert expected in str(err.value)


def test_a_budget_turns_the_search_on_and_the_committed_params_have_none():
    assert not config.load(REPO).target.active
    raw = default_params()
    raw["target"].update(latency_p95_ms=0.2)
    target = config.validate(raw).target
    assert target.active and target.limits() == {"latency_p95_ms": 0.2}


def test_an_override_sets_a_budget(tmp_path: Path):
    write_params(tmp_path, default_params())
    config.apply_overrides(tmp_path, ["target.latency_p95_ms=0.2"])
    assert config.load(tmp_path).target.latency_p95_ms == 0.2


def test_error_shows_the_bad_value():
    raw = default_params()
    raw["distill"]["alpha"] = 7
    with pytest.raises(config.ConfigError, match=r"distill\.alpha: .* \(got 7\)"):
        config.validate(raw)


def test_invalid_yaml_names_the_file(tmp_path: Path):
    (tmp_path / "params.yaml").write_text("teacher: [unclosed\n")
    with pytest.raises(config.ConfigError, match="params.yaml: not valid YAML"):
        config.load(tmp_path)


def test_missing_file_names_it(tmp_path: Path):
    with pytest.raises(config.ConfigError, match="params.yaml: file not found"):
        config.load(tmp_path)


def test_overrides_are_written_keeping_comments(tmp_path: Path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    params = config.apply_overrides(tmp_path, ["teacher.train.epochs=7", "distill.alpha=0.25"])
    assert params.teacher.train.epochs == 7 and params.distill.alpha == 0.25
    text = (tmp_path / "params.yaml").read_text()
    assert "# shrinkflow: the one knob file" in text
    assert config.load(tmp_path).teacher.train.epochs == 7


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("teacher.train.epochs=-1", "teacher.train.epochs"),
        ("teacher.train.epoks=2", "teacher.train.epoks: unknown key"),
        ("nosuch.key=1", "nosuch is not a section"),
        ("teacher.train.epochs", "expected KEY=VALUE"),
    ],
)
def test_bad_override_is_refused_and_changes_nothing(tmp_path: Path, override, expected):
    write_params(tmp_path, default_params())
    before = (tmp_path / "params.yaml").read_text()
    with pytest.raises(config.ConfigError, match=expected):
        config.apply_overrides(tmp_path, [override])
    assert (tmp_path / "params.yaml").read_text() == before


def test_section_hash_changes_only_with_its_section():
    base = config.validate(default_params())
    raw = default_params()
    raw["distill"]["alpha"] = 0.1
    changed = config.validate(raw)
    assert base.section_hash("teacher") == changed.section_hash("teacher")
    assert base.section_hash("distill") != changed.section_hash("distill")
    assert yaml.safe_load(yaml.safe_dump(raw))["distill"]["alpha"] == 0.1


def test_override_values_yaml_would_turn_into_dates_stay_strings(tmp_path: Path):
    write_params(tmp_path, default_params())
    params = config.apply_overrides(tmp_path, ["tracking.experiment=2024-01-01"])
    assert params.tracking.experiment == "2024-01-01"
    assert config.load(tmp_path).tracking.experiment == "2024-01-01"
