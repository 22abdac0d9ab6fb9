"""`teacher.arch` / `distill.student`: a tagged union on `name`, each family validating its own fields."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from steps import config
from steps.config.models import FAMILY_CONFIGS
from tests.helpers import REPO, default_params

VALID = {
    "mlp": {"name": "mlp", "hidden": [16]},
    "cnn": {"name": "cnn", "channels": [8], "hidden": [16], "batch_norm": True},
    "resnet": {"name": "resnet", "channels": [8], "hidden": [16]},
    "vit": {"name": "vit", "patch_size": 7, "embed_dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2.0, "pool": "mean"},
    "custom": {"name": "custom", "factory": "tests.custom_model:small_net", "kwargs": {"width": 4}},
    "hf": {"name": "hf", "config": {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2,
                                   "num_attention_heads": 2, "intermediate_size": 64}},
}
SET = {"channels": [8], "hidden": [8], "batch_norm": True, "patch_size": 4, "embed_dim": 32, "depth": 2,
       "heads": 2, "mlp_ratio": 4.0, "pool": "mean", "factory": "acme:make", "kwargs": {"width": 4},
       "config": {"model_type": "bert"}, "path": "my-bert", "gguf_file": "model.Q4_1.gguf"}
"""A value for every family's field that says more than "none", so it would change the model."""
OWN = {c.model_fields["name"].annotation.__args__[0]: set(c.model_fields) - {"name"} for c in FAMILY_CONFIGS}


def validate(arch: dict, where: str = "teacher") -> config.Params:
    raw = default_params()
    if where == "teacher":
        raw["teacher"]["arch"] = arch
    else:
        raw["distill"]["student"] = arch
    return config.validate(raw, stage=stage_for(arch))


def stage_for(arch: dict) -> str | None:
    """An hf model goes with text data and runs no whole pipeline yet (tests/steps/test_hf_teacher.py): its settings
    are validated as for the data stage alone, which reads no model but still validates every section."""
    return "data" if arch.get("name") == "hf" else None


def test_the_examples_cover_every_family_and_every_field():
    assert set(VALID) == set(OWN)
    assert set(SET) == set().union(*OWN.values())


@pytest.mark.parametrize("name", sorted(VALID))
def test_each_family_takes_its_own_fields(name):
    arch = validate(VALID[name]).teacher.arch
    assert arch.name == name and set(arch.model_dump()) == OWN[name] | {"name"}


@pytest.mark.parametrize(("name", "key"), [(n, k) for n in sorted(OWN) for k in sorted(set(SET) - OWN[n])])
def test_each_family_refuses_another_familys_field_naming_the_key(name, key):
    with pytest.raises(config.ConfigError) as err:
        validate({**VALID[name], key: SET[key]}, where="student")
    assert f"distill.student.{key}: unknown key (value {SET[key]!r})" in str(err.value)


def test_keys_the_flat_arch_wrote_for_every_family_are_accepted_when_they_say_none():
    """params written before the union: `{name: vit, channels: [], hidden: [], ...}` (README), an mlp's
    `batch_norm: false` (tests/helpers.py); the key is dropped, the family's own fields kept."""
    vit = validate({**VALID["vit"], "channels": [], "hidden": []}).teacher.arch
    mlp = validate({**VALID["mlp"], "channels": [], "batch_norm": False}).teacher.arch
    assert vit.model_dump() == VALID["vit"] and mlp.model_dump() == VALID["mlp"]


@pytest.mark.parametrize(("arch", "message"), [
    ({"name": "rnn"}, "teacher.arch.name: Input should be 'mlp', 'cnn', 'resnet', 'vit', 'custom' or 'hf' "
                      "(got 'rnn')"),
    ({"channels": [8]}, "teacher.arch.name: required key is missing"),
    ({**VALID["cnn"], "channels": []}, "teacher.arch: Value error, a cnn needs at least one entry in 'channels'"),
    ({**VALID["cnn"], "hidden": [0]}, "teacher.arch.hidden: Value error, layer widths must be positive (got [0])"),
    ({**VALID["resnet"], "batch_norm": False}, "resnet needs batch_norm: true"),
    ({"name": "custom"}, "teacher.arch.factory: required key is missing"),
    ({"name": "custom", "factory": "acme"}, 'teacher.arch.factory: Value error, a custom arch needs factory: '
                                            '"package.module:function" (got \'acme\')'),
])
def test_errors_name_the_key_of_params_yaml_not_the_union_tag(arch, message):
    with pytest.raises(config.ConfigError) as err:
        validate(arch)
    assert message in str(err.value)


def test_an_override_and_a_sweep_switch_families(tmp_path):
    raw = default_params()
    (tmp_path / "params.yaml").write_text(json.dumps(raw))
    vit = json.dumps(VALID["vit"])
    assert config.apply_overrides(tmp_path, [f"teacher.arch={vit}"]).teacher.arch.name == "vit"
    assert config.apply_overrides(tmp_path, ["teacher.arch.embed_dim=32"]).teacher.arch.embed_dim == 32
    members = config.sweep_members(config.validate(raw), config.parse_grid(
        [f"distill.student={json.dumps(VALID['mlp'])},{json.dumps(VALID['resnet'])}"]))
    assert [m.params.distill.student.name for m in members] == ["mlp", "resnet"]


def test_the_schema_validates_every_family_without_loading_torch():
    code = ("import sys, json; from steps import config; raw = json.loads(sys.argv[1]); "
            "[config.validate({**raw, 'teacher': {**raw['teacher'], 'arch': a}}, stage=s) "
            "for a, s in json.loads(sys.argv[2])]; "
            "print(sorted(m for m in sys.modules if m in ('torch', 'transformers') or m.startswith('torch.')))")
    archs = [(arch, stage_for(arch)) for arch in VALID.values()]
    out = subprocess.run([sys.executable, "-c", code, json.dumps(default_params()), json.dumps(archs)],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_family_names_its_layer_widths_for_the_plot_labels():
    widths = {name: validate(arch).teacher.arch.widths for name, arch in VALID.items()}
    assert widths == {"mlp": [16], "cnn": [8, 16], "resnet": [8, 16], "vit": [], "custom": [], "hf": []}
