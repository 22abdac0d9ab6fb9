"""Structured pruning: physically remove whole channels and neurons.

Unstructured pruning (pruning.py) leaves zeros that dense kernels still
multiply; removing a channel makes every tensor that touches it smaller, so
parameters, MACs and latency all drop. Removing conv channel c must also
remove BN entry c, input channel c of the next conv (or the c-th block of
the flattened features in the next Linear), and, in a ResNet, channel c of
every layer summed into the same residual stream. torch-pruning's DepGraph
(Fang et al. 2023, "DepGraph: Towards Any Structural Pruning") traces the
model once and groups those coupled slices, so a group is scored and removed
as one.

The output layer is never pruned: the number of classes must stay.
Pruned layers get new Parameter objects: build the optimizer after pruning.
"""

from __future__ import annotations


import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from steps.compression import choices
from steps.compression.families.custom.model import refuse_unprunable

ROOTS = (nn.Conv2d, nn.Linear)
"""Layers whose output channels start a pruning group."""


class BNScaleOrL1(tp.importance.GroupMagnitudeImportance):
    """Network slimming (Liu et al. 2017) where a group has BatchNorm, L1 magnitude where it has none.

    torch-pruning's BNScaleImportance returns None for a group without BN and
    the pruner then skips it, so the MLP head of a CNN/ResNet would keep its
    width; falling back to L1 keeps the promise that every layer shrinks.
    """

    def __init__(self) -> None:
        super().__init__()
        self._bn = tp.importance.BNScaleImportance()
        self._l1 = tp.importance.MagnitudeImportance(p=1)

    def __call__(self, group):
        imp = self._bn(group)
        return imp if imp is not None else self._l1(group)


def l1_importance() -> tp.importance.Importance:
    return tp.importance.MagnitudeImportance(p=1)


def l2_importance() -> tp.importance.Importance:
    return tp.importance.MagnitudeImportance(p=2)


def taylor_importance() -> tp.importance.Importance:
    return tp.importance.TaylorImportance()  # Molchanov et al. 2019: |w * dL/dw|


IMPORTANCES = choices.IMPORTANCES  # name -> a factory above
NEEDS_CALIBRATION = {"taylor"}
NEEDS_BATCH_NORM = {"bn_scale"}


def get_importance(name: str) -> tp.importance.Importance:
    return IMPORTANCES.resolve(name)()


def output_layer(model: nn.Module) -> nn.Module:
    """The last Conv2d/Linear: its outputs are the class logits."""
    roots = [m for m in model.modules() if isinstance(m, ROOTS)]
    if not roots:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to prune")
    return roots[-1]


def _ratio_keeping(channels: int, keep: int) -> float:
    """A ratio for which torch-pruning keeps `keep` of a layer's `channels` (0 when it keeps them all).

    torch-pruning keeps int(n * (1 - ratio)): a floor, so float noise
    (10 * (1 - 0.9) = 0.999...) could empty a layer, and an emptied group is
    silently skipped. The +0.5 puts the product mid-way between integers.
    """
    return max(0.0, 1 - (keep + 0.5) / channels)


def layer_widths(model: nn.Module) -> dict[nn.Module, int]:
    """{layer: output channels} of every prunable layer (all Conv2d/Linear but the output layer)."""
    head = output_layer(model)
    return {m: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            for m in model.modules() if isinstance(m, ROOTS) and m is not head}


def target_widths(original: dict[nn.Module, int], sparsity: float, round_to: int = 1) -> dict[nn.Module, int]:
    """Each layer keeps (1 - sparsity) of its original channels, rounded down to a multiple of `round_to`
    (at least `round_to`; torch-pruning's rounding rule).

    Computed from the original widths every round, so rounding does not compound over rounds. CPU
    kernels work on blocks of 8 or 16 channels: ONNX Runtime ran a CNN pruned to 21/42/83 channels slower
    than the unpruned 32/64/128 one, and one pruned to 16/48/96 1.9x faster (benchmarks/README.md).
    """
    if not 0 <= sparsity < 1 or round_to < 1:
        raise ValueError(f"need 0 <= sparsity < 1 and round_to >= 1, got {sparsity}, {round_to}")
    return {m: max(round_to, round(n * (1 - sparsity)) // round_to * round_to) for m, n in original.items()}


def _per_layer_ratios(model: nn.Module, amount: float) -> dict[nn.Module, float]:
    """Each layer keeps round(n * (1 - amount)) of its n channels, at least one."""
    return {m: _ratio_keeping(n, max(1, round(n * (1 - amount)))) for m, n in layer_widths(model).items()}


def _taylor_gradients(model: nn.Module, calibration: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Cross-entropy gradients on one batch, in eval mode so BN running statistics stay as they are."""
    x, y = calibration
    was_training = model.training
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            F.cross_entropy(model(x), y).backward()
    finally:
        model.train(was_training)


def _check(model: nn.Module, amount: float, importance: str, calibration) -> None:
    if not 0 <= amount < 1:
        raise ValueError(f"channel pruning amount must be in [0, 1), got {amount}")
    get_importance(importance)  # unknown names fail before any work
    refuse_unprunable(model)  # a layer torch-pruning cannot shrink (or a checkpoint rebuild) fails by name
    if importance in NEEDS_CALIBRATION and calibration is None:
        raise ValueError(f"importance {importance!r} is data-driven: pass calibration=(x, y), a labelled batch")
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if importance in NEEDS_BATCH_NORM and not has_bn:
        raise ValueError(f"importance {importance!r} ranks channels by BatchNorm scale but the model has no BatchNorm")


def prune_channels(
    model: nn.Module,
    example_inputs: torch.Tensor,
    amount: float,
    importance: str,
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    global_pruning: bool = False,
    widths: dict[nn.Module, int] | None = None,
    round_to: int | None = None,
) -> nn.Module:
    """Remove `amount` of the current channels of every prunable layer, in place; returns `model`.

    Local (default): each layer keeps round(n * (1 - amount)) of its n channels
    (at least one), coupled layers sharing one decision. Global: one ranking
    over all groups (torch-pruning normalises each group's scores by their
    mean), so layers lose different fractions; torch-pruning keeps
    int(N * (1 - amount)) of the N channels in all, except that a layer whose
    every channel falls below the threshold is left whole (it skips a group
    it would empty), so fewer may go.
    Each call traces the model afresh, so repeated calls prune relative to the
    current widths (see channel_keep_amounts).
    `widths` ({layer: channels to keep}, local pruning only) replaces `amount`
    per layer, e.g. widths from target_widths, which are rounded to SIMD-friendly
    multiples; `round_to` is torch-pruning's own rounding, for global pruning.
    """
    _check(model, amount, importance, calibration)
    if amount == 0:
        return model
    if calibration is not None and importance in NEEDS_CALIBRATION:
        _taylor_gradients(model, calibration)
    head = output_layer(model)
    if widths is not None:
        # Every layer gets its ratio (0 keeps it whole): a layer missing from the dict would get `amount`.
        ratios = {m: _ratio_keeping(n, widths[m]) for m, n in layer_widths(model).items()}
    else:
        ratios = None if global_pruning else _per_layer_ratios(model, amount)
    pruner = tp.pruner.BasePruner(
        model,
        example_inputs,
        importance=get_importance(importance),
        global_pruning=global_pruning,
        pruning_ratio=amount,
        pruning_ratio_dict=ratios,
        ignored_layers=[head],
        round_to=round_to if global_pruning else None,
        root_module_types=list(ROOTS),
    )
    pruner.step()
    model.zero_grad(set_to_none=True)  # the calibration gradients are not training gradients
    return model


def channel_keep_amounts(schedule: list[float]) -> list[float]:
    """Cumulative removed fractions s_t -> the amount to remove from the current model each round.

    After round t-1 a fraction (1 - s_{t-1}) of the channels remains; keeping
    (1 - s_t) of the original means removing a_t = 1 - (1 - s_t) / (1 - s_{t-1}).
    """
    amounts, previous = [], 0.0
    for s in schedule:
        if not previous <= s < 1:
            raise ValueError(f"schedule must be non-decreasing in [0, 1), got {schedule}")
        amounts.append(1 - (1 - s) / (1 - previous))
        previous = s
    return amounts
