import json
import pickle
from pathlib import Path

import pytest
import torch

from steps.compression import checkpoint, pruning
from steps.compression.models import ModelSpec, build

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
