import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from steps.compression import measure, pruning, structured
from steps.compression.choices import FAMILIES
from steps.compression.families import build, checkpoint
from steps.compression.families.spec import ModelSpec
from steps.config.models import FAMILY_CONFIGS

SPEC = ModelSpec(name="cnn", channels=[4, 8], hidden=[16])


def test_round_trip_gives_identical_outputs(tmp_path: Path):
    torch.manual_seed(0)
    model = build(SPEC).eval()
    checkpoint.save(model, SPEC, tmp_path / "m.safetensors", tmp_path / "m.json", {"note": "x"})
    loaded, spec = checkpoint.load(tmp_path / "m.safetensors", tmp_path / "m.json")
    x = torch.randn(3, 1, 28, 28)
    assert spec == SPEC
    assert torch.equal(model(x), loaded(x))
    assert json.loads((tmp_path / "m.json").read_text())["meta"] == {"note": "x"}


def test_unfolded_pruning_masks_are_refused(tmp_path: Path):
    model = build(SPEC)
    pruning.prune_magnitude(model, 0.5, "global")
    with pytest.raises(ValueError, match="masks not folded"):
        checkpoint.save(model, SPEC, tmp_path / "m.safetensors", tmp_path / "m.json")
    assert not (tmp_path / "m.safetensors").exists()


def test_weights_that_do_not_match_the_spec_are_refused(tmp_path: Path):
    checkpoint.save(build(SPEC), SPEC, tmp_path / "m.safetensors", tmp_path / "m.json")
    other = ModelSpec(name="cnn", channels=[4, 4], hidden=[16])
    checkpoint.write_json(tmp_path / "m.json", {"spec": other.to_dict(), "meta": {}})
    with pytest.raises(ValueError, match="m.safetensors: weights do not match spec"):
        checkpoint.load(tmp_path / "m.safetensors", tmp_path / "m.json")


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_a_pickle_bomb_is_not_executed(tmp_path: Path):
    checkpoint.save(build(SPEC), SPEC, tmp_path / "m.safetensors", tmp_path / "m.json")
    marker = tmp_path / "pwned"
    bomb = _Exploit()
    bomb.target = str(marker)
    (tmp_path / "m.safetensors").write_bytes(pickle.dumps(bomb))
    with pytest.raises(ValueError, match="m.safetensors"):
        checkpoint.load(tmp_path / "m.safetensors", tmp_path / "m.json")
    assert not marker.exists()


def test_missing_file_names_it(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors: model file missing"):
        checkpoint.load(tmp_path / "nope.safetensors", tmp_path / "nope.json")


SPECS = {
    "mlp": ModelSpec(name="mlp", hidden=[16], batch_norm=False),
    "cnn": SPEC,
    "resnet": ModelSpec(name="resnet", channels=[4, 8], hidden=[16]),
    "vit": ModelSpec(name="vit", embed_dim=16, depth=2, heads=2),
    "custom": ModelSpec(name="custom", factory="tests.custom_model:small_net", kwargs={"width": 4}),
}


def trained_stats(model: torch.nn.Module) -> torch.nn.Module:
    """Non-default BN running statistics, so a load that skipped them would show."""
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 1, 28, 28))
    return model.eval()


FILE_FAMILIES = sorted(c.model_fields["name"].annotation.__args__[0] for c in FAMILY_CONFIGS if not c.saves_directory)
"""The families whose checkpoint is a .safetensors file and its .json spec; hf saves a save_pretrained folder
(tests/compression/test_hf_family.py)."""


@pytest.mark.parametrize("name", FILE_FAMILIES)
def test_every_family_round_trips(tmp_path: Path, name):
    assert set(SPECS) == set(FILE_FAMILIES) and set(FILE_FAMILIES) < set(FAMILIES)
    torch.manual_seed(0)
    model = trained_stats(build(SPECS[name]))
    checkpoint.save(model, SPECS[name], tmp_path / "m.safetensors", tmp_path / "m.json")
    loaded, _ = checkpoint.load(tmp_path / "m.safetensors", tmp_path / "m.json")
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_structurally_pruned_model_round_trips(tmp_path: Path, name):
    torch.manual_seed(0)
    model = build(SPECS[name])
    structured.prune_channels(model, torch.randn(1, 1, 28, 28), 0.5, "l1")
    model = trained_stats(model)
    checkpoint.save(model, SPECS[name], tmp_path / "m.safetensors", tmp_path / "m.json")
    loaded, spec = checkpoint.load(tmp_path / "m.safetensors", tmp_path / "m.json")
    x = torch.randn(3, 1, 28, 28)
    assert spec == SPECS[name]
    assert measure.parameters(loaded) == measure.parameters(model) < measure.parameters(build(spec))
    assert torch.equal(model(x), loaded(x))
    assert not loaded.training


def test_shrunk_weights_that_do_not_chain_are_refused(tmp_path: Path):
    state = build(SPEC).state_dict()
    state["features.0.weight"] = state["features.0.weight"][:3]  # conv narrowed, its BN not
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "m.safetensors"))
    checkpoint.write_json(tmp_path / "m.json", {"spec": SPEC.to_dict(), "meta": {}})
    with pytest.raises(ValueError, match="m.safetensors: weights do not match spec"):
        checkpoint.load(tmp_path / "m.safetensors", tmp_path / "m.json")
