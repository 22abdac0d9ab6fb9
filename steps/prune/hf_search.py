"""The budget search on an hf teacher: the uniform shapes a `from_pretrained` config can describe.

The channel search (budget_search.py) gives every layer its own width; an hf encoder's pruned folder must reload
with stock `from_pretrained`, whose config holds one head count, one FFN width and one hidden width for every
layer (families/hf/method.py). So the settings here are whole shapes, a small grid over prune.transformer's
fractions:
- depth: 0, 1/4 and 1/2 of the layers (more goes past what fine-tuning recovers without distillation: Minitron
  and Sheared-LLaMA lose far more to depth than to width, and the width axes still reach a small budget);
- heads (with the hidden width: heads x head size, `heads` = `embedding`) and FFN width (`mlp`): the full width
  or each `target.search.widths` fraction kept.
At most 3 x 4 x 4 = 48 shapes with the default widths (fewer on a shallow teacher: equal shapes are one): each is
a pruned copy of the teacher to score and an ONNX file to time per precision, so the grid stays what a CPU
measures in minutes.

1. Score: each shape is cut from a copy of the teacher by prune_encoder (prune.transformer.importance and
   depth_metric on calibration rows of the training split) and scored without fine-tuning on the validation
   split (at most target.search.sensitivity_images rows): accuracy, agreement with the teacher's predictions,
   and the mean KL divergence from the teacher's class probabilities, which ranks them (accuracy moves in
   steps of one row and ties on a small split; the KL tells apart two shapes that both still agree).
2. Cost, per precision: budget.cost of each shape's deployable file (parameters, size, MACs, p95 and, with a
   speedup budget, the speedup beside the teacher's reference file), cached as the channel search caches its
   settings, and held against each limit less target.search.margin.
3. Verify as the channel search does (budget_search.Verifier): the `target.search.candidates` fitting shapes of
   lowest KL are fine-tuned (prune.finetune) and measured afresh in windows beside the reference; the most
   accurate that holds is the result; none: BudgetUnreachable, naming how close the best came.
The record (SearchOutcome) has the channel search's keys; its "layers" are the three axes (layers, heads,
intermediate), so the sensitivity heat-map shows each axis cut alone.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass

import torch
from torch import nn

from steps import config
from steps.compression import progress, quantization, width_search
from steps.compression.families.hf import importance
from steps.compression.families.hf.method import Fractions, Shape, prune_encoder, shape_of, target_shape
from steps.compression.families.hf.pruning import head_size
from steps.compression.prune_method import CALIBRATION_IMAGES
from steps.compression.training import Split, predict_logits, rows
from steps.core import budget, datasets
from steps.prune.budget_search import (
    PHASE, BudgetUnreachable, SearchOutcome, Verifier, reference_file, search_again)
from steps.prune.search_cache import SearchCache, cache_key, machine

DEPTHS = (0.0, 0.25, 0.5)
"""Fractions of the layers a shape may remove (see the module docstring)."""
ORIGIN = "uniform"
"""What proposed a shape (a record's `origin`): every layer cut alike."""


@dataclass(frozen=True)
class Axis:
    """One axis of the shapes, named as the record's `widths` keys, with the teacher's size on it."""

    name: str
    width: int


def axes_of(shape: Shape) -> tuple[Axis, ...]:
    """The record's axes: layers, heads per layer (the hidden width follows them), FFN width."""
    return Axis("layers", shape.layers), Axis("heads", shape.heads), Axis("intermediate", shape.intermediate)


def setting_of(shape: Shape) -> tuple[int, int, int]:
    return shape.layers, shape.heads, shape.intermediate


def grid(original: Shape, size: int, widths: list[float], round_to: int) -> list[Shape]:
    """The distinct shapes of DEPTHS x (full + `widths` kept) heads x (full + `widths` kept) FFN, widest first."""
    cuts = [0.0, *(1 - w for w in sorted(widths, reverse=True))]
    shapes: list[Shape] = []
    for depth in DEPTHS:
        for heads in cuts:
            for mlp in cuts:
                shape = target_shape(original, size, Fractions(depth, heads, mlp, heads), round_to)
                if shape.layers >= 1 and shape not in shapes:
                    shapes.append(shape)
    return shapes


def describe_shape(shape: Shape) -> str:
    return (f"{shape.layers} layer(s), {shape.heads} head(s) (hidden {shape.hidden}), "
            f"FFN {shape.intermediate}")


def _agreement(teacher_logits: torch.Tensor, logits: torch.Tensor) -> tuple[float, float]:
    """(mean KL(teacher || model) of the class probabilities, fraction of rows whose predicted class agrees)."""
    kl = torch.nn.functional.kl_div(logits.log_softmax(1), teacher_logits.log_softmax(1), log_target=True,
                                    reduction="batchmean")
    return float(kl), float((logits.argmax(1) == teacher_logits.argmax(1)).float().mean())


def score(model: nn.Module, scored: Split, teacher_logits: torch.Tensor) -> dict:
    """{predicted_accuracy, kl_to_teacher, agreement} of an un-fine-tuned candidate on the scored rows."""
    logits = predict_logits(model, scored.x)
    kl, agreement = _agreement(teacher_logits, logits)
    return {"predicted_accuracy": float((logits.argmax(1) == scored.y).float().mean()), "kl_to_teacher": kl,
            "agreement": agreement}


def sensitivity(shapes: list[Shape], original: Shape, scores: dict, base: float) -> width_search.Sensitivity:
    """{axis: {kept: validation accuracy lost}} of the shapes that cut one axis alone (the heat-map's rows)."""
    table: width_search.Sensitivity = {axis.name: {} for axis in axes_of(original)}
    full = setting_of(original)
    for shape in shapes:
        setting = setting_of(shape)
        cut = [i for i, (n, f) in enumerate(zip(setting, full, strict=True)) if n != f]
        if len(cut) == 1:
            table[axes_of(original)[cut[0]].name][setting[cut[0]]] = base - scores[shape]["predicted_accuracy"]
    return table


def search(teacher: nn.Module, train: Split, val: Split, params: config.Params, root, device: torch.device,
           generator: torch.Generator) -> SearchOutcome:
    """The most accurate fine-tuned uniform shape inside `params.target`, or BudgetUnreachable."""
    target, prune, opts = params.target, params.prune, params.target.search
    knobs = prune.transformer
    importance.criterion(importance.HF_IMPORTANCES, knobs.importance)  # an unknown name: refused before any work
    teacher = teacher.cpu().eval()
    original, size = shape_of(teacher), head_size(teacher)
    axes, shapes = axes_of(original), grid(original, size, opts.widths, prune.round_to)
    calibration = train.batch(torch.arange(min(CALIBRATION_IMAGES, len(train))), torch.device("cpu"))
    example = rows(train.x, slice(0, 2))

    def make(shape: Shape) -> nn.Module:
        return prune_encoder(copy.deepcopy(teacher), shape, knobs.importance, knobs.depth_metric, calibration)

    scored = val if opts.sensitivity_images is None else Split(rows(val.x, slice(0, opts.sensitivity_images)),
                                                              val.y[: opts.sensitivity_images])
    teacher_logits = predict_logits(teacher, scored.x)
    base = float((teacher_logits.argmax(1) == scored.y).float().mean())
    scores: dict[Shape, dict] = {}

    cache, contract = SearchCache(root), datasets.contract(root)
    batch, searching = budget.timed_batch(val, target.batch_size), budget.search_timing(params)
    int8_rows = (quantization.calibration_slice(train.x, min(CALIBRATION_IMAGES, len(train)), params.seed)
                 if "static" in opts.precisions else None)
    reference = reference_file(root, cache, teacher, example, contract, params.export)
    walk_reference = reference if target.speedup is not None else None  # else a shape is timed alone
    arch = [type(teacher).__name__, teacher.hf.config.model_type, setting_of(original), original.hidden,
            teacher.hf.config.vocab_size, list(next(iter(example.values())).shape[1:])]

    def point(built, shape: Shape, precision: str) -> width_search.Point:
        key = cache_key(arch, setting_of(shape), precision, searching, walk_reference is not None,
                        params.export.model_dump(), machine())
        cost = cache.cost(key, lambda: budget.cost(built(), batch, precision, searching, int8_rows,
                                                   walk_reference, contract, params.export))
        return width_search.Point(setting_of(shape), cost, budget.excess(cost, target, opts.margin, upper=False),
                                  scores[shape]["predicted_accuracy"], tag=precision, origin=ORIGIN)

    def explore() -> list[width_search.Point]:
        """Every shape scored (once) and costed in every precision; a shape is built at most once per pass, and not
        at all when it is scored and its costs are cached (a copy of a large encoder per shape would not fit)."""
        began, points = time.perf_counter(), []
        for shape in shapes:
            built = functools.cache(lambda shape=shape: make(shape))
            if shape not in scores:
                scores[shape] = score(built(), scored, teacher_logits)
            points += [point(built, shape, precision) for precision in opts.precisions]
        progress.report(PHASE, "uniform shapes scored and measured",
                        {"shapes": len(shapes), "precisions": len(opts.precisions),
                         "fitting": sum(p.fits for p in points), "base_val_accuracy": base}, progress.since(began))
        return points

    by_setting = {setting_of(shape): shape for shape in shapes}

    def rank(p: width_search.Point) -> tuple:
        s = scores[by_setting[p.setting]]
        return s["kl_to_teacher"], -s["predicted_accuracy"], -p.cost["parameters"]

    points = explore()
    if not any(p.fits for p in points) and search_again(cache, target):
        points = explore()
    fitting = sorted((p for p in points if p.fits), key=rank)[: opts.candidates]
    if not fitting:
        closest = min(points, key=lambda p: (p.excess, rank(p)))
        raise _unreachable(by_setting[closest.setting], closest, target)
    verifier = Verifier(train, val, params, device, generator, batch, int8_rows, reference, contract)
    return verifier.choose(lambda p: make(by_setting[p.setting]), fitting, axes,
                           [_record(axes, p, scores[by_setting[p.setting]]) for p in points],
                           sensitivity(shapes, original, scores, base), base)


def _record(axes, p: width_search.Point, scored: dict) -> dict:
    return {"precision": p.tag, "origin": p.origin,
            "widths": {axis.name: w for axis, w in zip(axes, p.setting, strict=True)},
            "excess": p.excess, "fits": p.fits, **scored, **p.cost}


def _unreachable(shape: Shape, best: width_search.Point, target: config.BudgetConfig) -> BudgetUnreachable:
    return BudgetUnreachable(
        f"no uniform shape of the hf teacher meets target {target.limits()}: the closest, {describe_shape(shape)} "
        f"in {budget.describe(best.cost)}, is over by "
        f"{'; '.join(budget.violations(best.cost, target, target.search.margin, upper=False))} (the narrowest "
        f"shapes target.search.widths and half the layers allow; allow narrower widths, or loosen the budget)")
