import pytest
import torch
from torch import nn

from steps.compression.distillation.features import FeatureTap, module_names
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec


def cnn(batch_norm: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return build(ModelSpec(name="cnn", channels=[4, 8], hidden=[16], batch_norm=batch_norm)).eval()


def images() -> torch.Tensor:
    return torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_module_names_are_the_named_submodules():
    model = cnn()
    names = module_names(model)
    assert names == [n for n, _ in model.named_modules() if n]
    assert "" not in names
    assert {"features.2": nn.ReLU, "features.6": nn.ReLU, "features.7": nn.MaxPool2d} == {
        n: type(dict(model.named_modules())[n]) for n in ("features.2", "features.6", "features.7")}


def test_tap_captures_the_submodule_output():
    model, x = cnn(), images()
    with FeatureTap(model, ["features.2", "features.7"]) as tap, torch.no_grad():
        model(x)
        assert torch.equal(tap.outputs["features.2"], model.features[:3](x))
        assert torch.equal(tap.outputs["features.7"], model.features(x))


def test_tap_output_is_not_overwritten_by_the_following_inplace_relu():
    model, x = cnn(batch_norm=False), images()  # features.0 Conv2d, features.1 ReLU(inplace=True)
    with FeatureTap(model, ["features.0"]) as tap, torch.no_grad():
        model(x)
        conv = model.features[0](x)
    assert (conv < 0).any()
    assert torch.equal(tap.outputs["features.0"], conv)


def test_tapped_features_carry_gradients_to_the_model():
    model = cnn()
    with FeatureTap(model, ["features.2"]) as tap:
        model(images())
    tap.outputs["features.2"].sum().backward()
    assert model.features[0].weight.grad is not None and model.features[0].weight.grad.abs().sum() > 0


def test_hooks_are_removed_on_exit_even_after_an_error():
    model = cnn()
    relu = model.features[2]
    with pytest.raises(RuntimeError, match="boom"), FeatureTap(model, ["features.2"]) as tap:
        assert len(relu._forward_hooks) == 1
        raise RuntimeError("boom")
    assert len(relu._forward_hooks) == 0
    tap.outputs.clear()
    model(images())
    assert tap.outputs == {}


def test_unknown_layer_is_named_and_valid_ones_listed():
    with pytest.raises(ValueError, match=r"no module named 'features\.99'") as err:
        FeatureTap(cnn(), ["features.2", "features.99"])
    assert "features.2 (ReLU)" in str(err.value) and "classifier.1 (Linear)" in str(err.value)


def test_long_name_lists_are_shortened():
    with pytest.raises(ValueError, match=r"and \d+ more") as err:
        FeatureTap(nn.Sequential(*[nn.ReLU() for _ in range(200)]), ["nope"])
    assert len(str(err.value)) < 2000


class Pair(nn.Module):
    """Returns (x + 1, x * 2), as a transformers attention module returns (output, probabilities)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x + 1, x * 2


def test_a_name_ending_in_an_index_taps_that_element_of_a_tuple_output():
    model, x = nn.Sequential(nn.Identity(), Pair()), torch.arange(3.0)
    with FeatureTap(model, ["1[1]", "1[0]"]) as tap:
        model(x)
    assert torch.equal(tap.outputs["1[1]"], x * 2) and torch.equal(tap.outputs["1[0]"], x + 1)
    with pytest.raises(TypeError, match=r"'1' \(Pair\) returned tuple, not a Tensor.*name\[i\]"), \
            FeatureTap(model, ["1"]):
        model(x)
    with pytest.raises(TypeError, match=r"'1\[2\]': module Pair returned a tuple of 2, which has no element 2"), \
            FeatureTap(model, ["1[2]"]):
        model(x)
    with pytest.raises(TypeError, match=r"'0\[0\]': module Identity returned Tensor, which has no element 0"), \
            FeatureTap(model, ["0[0]"]):
        model(x)
    with pytest.raises(ValueError, match=r"no module named '7'"):
        FeatureTap(model, ["7[1]"])
