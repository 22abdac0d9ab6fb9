"""The greedy width search on a real (tiny) CNN, with costs it can compute exactly (parameters)."""

import pytest
import torch

from steps.compression import measure, width_search
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cnn():
    torch.manual_seed(0)
    return build(ModelSpec("cnn", channels=[8, 16], hidden=[32], batch_norm=True)).eval()


def test_layers_get_rounded_levels_narrowing_from_their_full_width():
    layers = width_search.layers_of(tiny_cnn(), [0.75, 0.5, 0.25], round_to=4)
    assert [(layer.width, layer.levels) for layer in layers] == [(8, (8, 4)), (16, (16, 12, 8, 4)),
                                                                  (32, (32, 24, 16, 8))]


def test_build_cuts_each_layer_to_its_width_and_leaves_the_original_whole():
    model, x = tiny_cnn(), torch.randn(2, 1, 28, 28)
    layers = width_search.layers_of(model, [0.5], round_to=1)
    pruned = width_search.build(model, layers, (4, 16, 16), x, "l1")
    widths = [m.out_channels if isinstance(m, torch.nn.Conv2d) else m.out_features
              for m in pruned.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert widths == [4, 16, 16, 10]
    assert model.features[0].out_channels == 8  # the teacher is not touched
    assert pruned(x).shape == (2, 10)


def test_sensitivity_cuts_one_layer_at_a_time():
    layers = width_search.layers_of(tiny_cnn(), [0.5], round_to=1)
    scored = []
    base, table = width_search.sensitivity(layers, lambda s: scored.append(s) or -sum(s) / 100)
    assert scored == [(8, 16, 32), (4, 16, 32), (8, 8, 32), (8, 16, 16)]
    assert table == {layers[0].name: {4: pytest.approx(-0.04)}, layers[1].name: {8: pytest.approx(-0.08)},
                     layers[2].name: {16: pytest.approx(-0.16)}}
    assert base == pytest.approx(-0.56)


def test_greedy_narrows_the_cheapest_layer_first_until_the_budget_fits():
    model, x = tiny_cnn(), torch.randn(2, 1, 28, 28)
    layers = width_search.layers_of(model, [0.75, 0.5, 0.25], round_to=1)
    # the classifier's first layer loses least accuracy per parameter: the search must cut it first
    table = {layers[0].name: {w: 0.3 for w in layers[0].levels[1:]},
             layers[1].name: {w: 0.2 for w in layers[1].levels[1:]},
             layers[2].name: {w: 0.01 * (32 - w) / 8 for w in layers[2].levels[1:]}}
    limit = measure.parameters(model) // 3

    def cost(setting):
        return {"parameters": measure.parameters(width_search.build(model, layers, setting, x, "l1"))}

    walk = width_search.greedy(layers, table, 0.9, cost, lambda c: max(0.0, c["parameters"] / limit - 1))
    assert walk.end.fits and walk.end.cost["parameters"] <= limit
    assert walk.path[0].setting == (8, 16, 32) and not walk.path[0].fits
    assert walk.path[1].setting == (8, 16, 24)
    assert len(walk.measured) > len(walk.path)  # every move was measured, not only the ones taken


def test_greedy_does_not_walk_when_even_the_narrowest_setting_is_over_the_budget():
    layers = width_search.layers_of(tiny_cnn(), [0.5], round_to=1)
    table = {layer.name: {w: 0.1 for w in layer.levels[1:]} for layer in layers}
    walk = width_search.greedy(layers, table, 0.9, lambda s: {"v": sum(s)}, lambda c: 1.0)
    assert [p.setting for p in walk.measured] == [(8, 16, 32), (4, 8, 16)]
    assert not any(p.fits for p in walk.measured)


def test_greedy_walks_to_the_narrowest_setting_when_only_it_fits():
    layers = width_search.layers_of(tiny_cnn(), [0.5], round_to=1)
    table = {layer.name: {w: 0.1 for w in layer.levels[1:]} for layer in layers}
    walk = width_search.greedy(layers, table, 0.9, lambda s: {"v": sum(s)}, lambda c: max(0.0, c["v"] / 28 - 1))
    assert walk.end.setting == (4, 8, 16) and walk.end.fits
    assert len(walk.path) == 4  # full, then one layer narrowed per step


def test_greedy_narrows_past_the_first_fit_for_candidates_with_room_under_the_budget():
    layers = width_search.layers_of(tiny_cnn(), [0.5], round_to=1)
    table = {layer.name: {w: 0.1 for w in layer.levels[1:]} for layer in layers}
    walk = width_search.greedy(layers, table, 0.9, lambda s: {"v": sum(s)}, lambda c: max(0.0, c["v"] / 50 - 1),
                               fits_wanted=2)
    fitting = [p for p in walk.path if p.fits]
    assert len(fitting) == 2 and sum(fitting[1].setting) < sum(fitting[0].setting) <= 50


def test_uniform_settings_cut_every_layer_to_one_fraction_widest_first():
    layers = width_search.layers_of(tiny_cnn(), [0.75, 0.5, 0.25], round_to=4)
    assert width_search.uniform(layers, [0.25, 0.5, 0.75], round_to=4) == [(4, 12, 24), (4, 8, 16), (4, 4, 8)]


def test_the_widest_uniform_setting_that_fits_is_measured_last_and_marked_as_the_baseline():
    layers = width_search.layers_of(tiny_cnn(), [0.75, 0.5, 0.25], round_to=4)
    table = {layer.name: {w: 0.1 for w in layer.levels[1:]} for layer in layers}
    points = width_search.widest_uniform_fit(layers, [0.75, 0.5, 0.25], 4, table, 0.9, lambda s: {"v": sum(s)},
                                             lambda c: max(0.0, c["v"] / 28 - 1), tag="fp32")
    assert [p.setting for p in points] == [(4, 12, 24), (4, 8, 16)]  # 40 is over 28, 28 fits: no narrower one
    assert [p.fits for p in points] == [False, True]
    assert {p.origin for p in points} == {"uniform"} and {p.tag for p in points} == {"fp32"}
