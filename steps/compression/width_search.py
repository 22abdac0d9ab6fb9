"""Per-layer width search: the most accurate width setting whose measured cost fits a budget.

NetAdapt-style (Yang et al. 2018), greedy: start from the full widths and, step by step, narrow the one
layer that buys the most budget per point of predicted accuracy lost, until a setting fits. Two tables
drive it:
- sensitivity: the validation accuracy lost when one layer alone is cut to each candidate width, with no
  fine-tuning; a setting's predicted accuracy is the full model's minus the sum of its layers' losses
  (additive, as NetAdapt and AMC assume). It ranks settings; fine-tuning later decides.
- cost: what a whole setting measures (latency on the deployment backend, file size, parameters, MACs).
  Costs are measured per setting, never summed per layer: on CPU kernels layer latencies do not add up
  (benchmarks/README.md: 21/42/83 channels ran slower than 32/64/128 on ONNX Runtime).
The caller supplies the measuring and the budget (steps/prune/budget_search.py); this module knows neither.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from steps.compression import structured
from steps.compression.rounding import keep

Setting = tuple[int, ...]
"""One kept width per prunable layer, in the order of `layers_of`."""


@dataclass(frozen=True)
class Layer:
    name: str
    width: int
    """The teacher's output channels."""
    levels: tuple[int, ...]
    """The widths the search may give it, the full width first, narrowing."""


def layers_of(model: nn.Module, fractions: list[float], round_to: int) -> list[Layer]:
    """Every prunable layer (all Conv2d/Linear but the output layer) with its candidate widths."""
    names = {module: name for name, module in model.named_modules()}
    out = []
    for module, width in structured.layer_widths(model).items():
        narrower = sorted({keep(width, f, round_to) for f in fractions} - {width}, reverse=True)
        out.append(Layer(names[module], width, (width, *(w for w in narrower if w < width))))
    return out


def full(layers: list[Layer]) -> Setting:
    return tuple(layer.width for layer in layers)


def build(model: nn.Module, layers: list[Layer], setting: Setting, example: torch.Tensor, importance: str,
          calibration: tuple[torch.Tensor, torch.Tensor] | None = None) -> nn.Module:
    """A copy of `model` with each layer cut to its width in `setting` (torch-pruning, coupled layers together)."""
    pruned = copy.deepcopy(model)
    if setting == full(layers):
        return pruned
    modules = dict(pruned.named_modules())
    widths = {modules[layer.name]: width for layer, width in zip(layers, setting, strict=True)}
    removed = 1 - sum(setting) / sum(full(layers))  # any value in (0, 1): `widths` decides per layer
    return structured.prune_channels(pruned, example, removed, importance, calibration=calibration, widths=widths)


Sensitivity = dict[str, dict[int, float]]
"""{layer name: {width: validation accuracy lost when only this layer is cut to it}}."""


def sensitivity(layers: list[Layer], score: Callable[[Setting], float]) -> tuple[float, Sensitivity]:
    """(the full model's score, the table): each layer cut alone to each of its narrower levels."""
    base = score(full(layers))
    table: Sensitivity = {}
    for i, layer in enumerate(layers):
        table[layer.name] = {}
        for width in layer.levels[1:]:
            setting = tuple(width if j == i else w for j, w in enumerate(full(layers)))
            table[layer.name][width] = base - score(setting)
    return base, table


def predicted_accuracy(layers: list[Layer], table: Sensitivity, base: float, setting: Setting) -> float:
    return base - sum(table[layer.name].get(width, 0.0) for layer, width in zip(layers, setting, strict=True))


@dataclass
class Point:
    """One measured setting: its cost, how far over the budget it is (0 = fits) and its predicted accuracy."""

    setting: Setting
    cost: dict
    excess: float
    predicted_accuracy: float
    tag: str = ""
    """The precision it was measured in."""
    origin: str = "greedy"
    """What proposed it: the greedy walk, or the uniform baseline (every layer cut to one fraction)."""

    @property
    def fits(self) -> bool:
        return self.excess == 0


@dataclass
class Walk:
    """The greedy path from the full widths, and every setting measured on the way (the frontier)."""

    path: list[Point] = field(default_factory=list)
    measured: list[Point] = field(default_factory=list)

    @property
    def end(self) -> Point:
        return self.path[-1]


def _narrower(layers: list[Layer], setting: Setting) -> list[Setting]:
    """Each setting one level narrower in exactly one layer."""
    out = []
    for i, (layer, width) in enumerate(zip(layers, setting, strict=True)):
        at = layer.levels.index(width)
        if at + 1 < len(layer.levels):
            out.append(tuple(layer.levels[at + 1] if j == i else w for j, w in enumerate(setting)))
    return out


def _best_move(current: Point, moves: list[Point]) -> Point:
    """A move that fits with the best predicted accuracy; else the most budget per accuracy point lost; else
    (every move measured no cheaper, i.e. noise) the move that removed the most."""
    fitting = [m for m in moves if m.fits]
    if fitting:
        return max(fitting, key=lambda m: m.predicted_accuracy)
    cheaper = [m for m in moves if m.excess < current.excess]
    if cheaper:
        return min(cheaper, key=lambda m: max(current.predicted_accuracy - m.predicted_accuracy, 1e-6)
                   / (current.excess - m.excess))
    return min(moves, key=lambda m: sum(m.setting))


def narrowest(layers: list[Layer]) -> Setting:
    return tuple(layer.levels[-1] for layer in layers)


def measured_point(layers: list[Layer], table: Sensitivity, base: float, setting: Setting,
                   measure: Callable[[Setting], dict], excess: Callable[[dict], float], tag: str = "",
                   origin: str = "greedy") -> Point:
    cost = measure(setting)
    return Point(setting, cost, excess(cost), predicted_accuracy(layers, table, base, setting), tag, origin)


def greedy(layers: list[Layer], table: Sensitivity, base: float, measure: Callable[[Setting], dict],
           excess: Callable[[dict], float], tag: str = "", fits_wanted: int = 1) -> Walk:
    """Narrow one layer a step at a time until `fits_wanted` settings on the path fit or none can narrow further.

    Past the first fit the walk goes on narrowing (the move with the best predicted accuracy), so the
    candidates include settings with room under the budget: the first fit is often at its edge, where a
    re-measurement can land either side.

    When the full widths do not fit, the narrowest setting is measured first: if even it does not fit, no
    walk can end inside the budget (narrower is taken to be no costlier, true of parameters, MACs and size,
    and of latency at widths rounded for the CPU kernels), and the walk stops there. An int8 form that runs
    slower than fp32 (ONNX Runtime's ConvInteger) is ruled out in two measurements instead of a whole walk.
    """
    walk = Walk()

    def point(setting: Setting) -> Point:
        p = measured_point(layers, table, base, setting, measure, excess, tag)
        walk.measured.append(p)
        return p

    walk.path.append(point(full(layers)))
    if not walk.end.fits and narrowest(layers) != full(layers) and not point(narrowest(layers)).fits:
        return walk
    while sum(p.fits for p in walk.path) < fits_wanted:
        moves = [point(s) for s in _narrower(layers, walk.end.setting)]
        if not moves:
            break
        walk.path.append(_best_move(walk.end, moves))
    return walk


def uniform(layers: list[Layer], fractions: list[float], round_to: int) -> list[Setting]:
    """The settings a person would set by hand: every layer cut to the same fraction (rounded as the levels
    are), widest first."""
    widest_first = sorted(set(fractions), reverse=True)
    settings = [tuple(keep(layer.width, f, round_to) for layer in layers) for f in widest_first]
    return list(dict.fromkeys(settings))


def widest_uniform_fit(layers: list[Layer], fractions: list[float], round_to: int, table: Sensitivity, base: float,
                       measure: Callable[[Setting], dict], excess: Callable[[dict], float],
                       tag: str = "") -> list[Point]:
    """The uniform settings measured from the widest until one fits (that one last, if any).

    The greedy walk trusts the sensitivity table, which is scored without fine-tuning; a uniform cut is the
    hand-set baseline it must beat. Verifying the widest uniform fit beside the walk's candidates means the
    search never returns a model less accurate after fine-tuning than that baseline."""
    points = []
    for setting in uniform(layers, fractions, round_to):
        points.append(measured_point(layers, table, base, setting, measure, excess, tag, origin="uniform"))
        if points[-1].fits:
            break
    return points
