"""The budget search the prune stage runs when params.yaml sets `target:`.

1. Sensitivity: each prunable layer of the teacher cut alone to each `target.search.widths` fraction,
   scored on the validation split; deterministic, so cached by what it depends on (the teacher file, the
   images, the widths, the ranking).
2. Search, per deployable precision: the greedy walk of compression/width_search.py, each setting it
   visits measured as the deployable file it would become (steps/core/budget.py) and held, by its p95,
   against each limit less target.search.margin. Measurements are cached
   per architecture, precision, timing and machine: a later run does not re-time what it timed before,
   except to refuse a latency budget: when nothing fits by timings partly from earlier runs, the search
   runs again on fresh ones (a machine's speed drifts; a stale slow timing must not refuse a budget).
3. Verify: the `target.search.candidates` fitting settings with the best predicted accuracy, and the widest
   uniform setting that fits (every layer cut to one `target.search.widths` fraction: the hand-set baseline
   the walk must beat, since its sensitivity table is scored without fine-tuning), are built,
   fine-tuned (prune.finetune) and measured afresh with more repeats, now by the upper end of the p95's
   interval (promote's rule); the most accurate one that still fits (and reaches target.min_accuracy) is
   the result. None fits: BudgetUnreachable, naming how close
   the best came, and nothing is promoted.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from steps import config
from steps.compression import progress, quantization, width_search
from steps.compression.prune_method import CALIBRATION_IMAGES
from steps.compression.training import Split, accuracy, adam, train_epochs
from steps.core import budget, datasets
from steps.core.files import atomic_write
from steps.core.hashing import sha256
from steps.core.layout import model_path, model_weights
from steps.core.names import ModelRole
from steps.core.torchkit import regularised_loss
from steps.prune.search_cache import SearchCache, cache_key, machine


PHASE = "budget search"
"""How its progress lines begin."""


class BudgetUnreachable(ValueError):
    """No model the search can build meets the budget; the message says how close the best came."""


@dataclass
class SearchOutcome:
    model: torch.nn.Module
    """The chosen candidate, fine-tuned."""
    chosen: dict
    candidates: list[dict]
    frontier: list[dict]
    """Every setting measured while searching (precision, widths, cost, predicted accuracy, fits)."""
    sensitivity: width_search.Sensitivity
    base_accuracy: float
    layer_widths: dict[str, int]
    """{prunable layer: the teacher's width}."""
    budget: dict = field(default_factory=dict)

    def record(self) -> dict:
        """What metrics/prune.json keeps of the search (JSON-able; the model is saved as the pruned model)."""
        return {"budget": self.budget, "layer_widths": self.layer_widths, "layers": list(self.layer_widths),
                "chosen": self.chosen,
                "candidates": self.candidates, "frontier": self.frontier, "base_val_accuracy": self.base_accuracy,
                "sensitivity": {layer: {str(w): d for w, d in drops.items()}
                                for layer, drops in self.sensitivity.items()}}


def _sensitivity(root: Path, cache: SearchCache, layers, make, val: Split, params: config.Params):
    search = params.target.search
    scored = Split(val.x[: search.sensitivity_images], val.y[: search.sensitivity_images])
    images = hashlib.sha256(scored.x.numpy().tobytes()).hexdigest()
    key = cache_key(sha256(root / model_path(ModelRole.TEACHER)), images,
                    [(layer.name, layer.levels) for layer in layers], params.prune.importance, params.seed)
    hit = cache.sensitivity(key)
    if hit is not None:
        progress.report(PHASE, "sensitivity from the cache", {}, 0.0)
        return hit["base"], {layer: {int(w): d for w, d in t.items()} for layer, t in hit["table"].items()}
    began = time.perf_counter()
    base, table = width_search.sensitivity(layers, lambda setting: accuracy(make(setting), scored))
    progress.report(PHASE, "sensitivity", {"layers": len(layers), "cuts_scored": sum(map(len, table.values())),
                                           "base_val_accuracy": base}, progress.since(began))
    cache.keep_sensitivity(key, base, table)
    return base, table


def _int8_calibration(train: Split, params: config.Params) -> np.ndarray | None:
    """The static int8 calibration of a measured setting: as many images as the criteria rank on (its latency
    does not depend on the scales it gets; the quantize stage calibrates with quantize.calibration_images)."""
    if "static" not in params.target.search.precisions:
        return None
    x = train.x.numpy()
    return quantization.calibration_slice(x, min(CALIBRATION_IMAGES, len(x)), params.seed)


def _point_record(layers, p: width_search.Point) -> dict:
    return {"precision": p.tag, "origin": p.origin,
            "widths": {layer.name: w for layer, w in zip(layers, p.setting, strict=True)},
            "predicted_accuracy": p.predicted_accuracy, "excess": p.excess, "fits": p.fits, **p.cost}


def _candidates(path: list[width_search.Point], points: list[width_search.Point], k: int) -> list:
    """The k fitting settings to fine-tune: those the walks stepped through first (the first fit and the ones
    narrowed past it, with room under the budget), best predicted accuracy first; then other fitting ones."""
    def best(ps):
        return sorted((p for p in ps if p.fits), key=lambda p: -p.predicted_accuracy)

    chosen = best(path)[:k]
    return chosen + [p for p in best(points) if p not in chosen][: k - len(chosen)]


def _new(points: list[width_search.Point], known: list[width_search.Point]) -> list[width_search.Point]:
    """`points` whose (setting, precision) is not in `known` or earlier in `points`."""
    seen, out = {(q.setting, q.tag) for q in known}, []
    for p in points:
        if (p.setting, p.tag) not in seen:
            seen.add((p.setting, p.tag))
            out.append(p)
    return out


def _closest(points: list[width_search.Point]) -> width_search.Point:
    return min(points, key=lambda p: (p.excess, -p.predicted_accuracy))


def reference_file(root: Path, cache: SearchCache, teacher: torch.nn.Module, example: torch.Tensor,
                    contract, export: config.ExportConfig) -> Path:
    """The teacher's deployable file as the export stage will write it (fp32, taking raw inputs): what every
    candidate is timed beside. Kept in the search cache, by the teacher's weights (its file, or the weights in its
    folder), the data's contract and the export settings."""
    key = cache_key(sha256(model_weights(root, ModelRole.TEACHER)), contract.to_dict(), export.model_dump())
    path = cache.folder / f"reference-{key}.onnx"
    if not path.is_file():
        with tempfile.TemporaryDirectory(prefix="shrinkflow-reference-") as scratch:
            built = budget.deployable_file(teacher, example, "fp32", Path(scratch), None, contract, export)
            atomic_write(path, lambda tmp: shutil.copyfile(built, tmp))
    return path


def search(teacher: torch.nn.Module, train: Split, val: Split, params: config.Params, root: Path,
           device: torch.device, generator: torch.Generator) -> SearchOutcome:
    """The most accurate fine-tuned model inside `params.target`, or BudgetUnreachable."""
    target, prune, opts = params.target, params.prune, params.target.search
    layers = width_search.layers_of(teacher, opts.widths, prune.round_to)
    example, ranking_batch = train.x[:2], (train.x[:CALIBRATION_IMAGES], train.y[:CALIBRATION_IMAGES])
    teacher = teacher.cpu().eval()

    def make(setting):
        return width_search.build(teacher, layers, setting, example, prune.importance, ranking_batch)

    cache = SearchCache(root)
    base, table = _sensitivity(root, cache, layers, make, val, params)
    batch, calibration = budget.timed_batch(val, target.batch_size), _int8_calibration(train, params)
    searching, contract = budget.search_timing(params), datasets.contract(root)
    arch = [type(teacher).__name__, list(example.shape[1:]), [(layer.name, layer.width) for layer in layers]]
    reference = reference_file(root, cache, teacher, example, contract, params.export)
    walk_reference = reference if target.speedup is not None else None  # else the walk times a setting alone

    def measure_in(precision: str):
        def measure(setting):
            key = cache_key(arch, setting, precision, searching, walk_reference is not None,
                            params.export.model_dump(), machine())
            return cache.cost(key, lambda: budget.cost(make(setting), batch, precision, searching, calibration,
                                                       walk_reference, contract, params.export))
        return measure

    def excess(cost):
        return budget.excess(cost, target, opts.margin, upper=False)

    def explore() -> tuple[list, list]:
        """(every setting measured, the candidates to verify), over every precision."""
        points, path, baselines = [], [], []
        for precision in opts.precisions:  # every setting measured, once per precision
            began = time.perf_counter()
            walk = width_search.greedy(layers, table, base, measure_in(precision), excess, tag=precision,
                                       fits_wanted=opts.candidates)
            measured = walk.measured
            if any(p.fits for p in walk.path):  # else not even the narrowest setting fits: no uniform one can
                uniform = width_search.widest_uniform_fit(layers, opts.widths, prune.round_to, table, base,
                                                          measure_in(precision), excess, tag=precision)
                measured = measured + uniform
                baselines += [p for p in uniform if p.fits]
            points += _new(measured, points)  # a setting both the walk and the uniform cuts visited is one point
            path += walk.path
            progress.report(PHASE, f"{precision} settings measured",
                            {"settings": len(measured), "fitting": sum(p.fits for p in measured)},
                            progress.since(began))
        fitting = _candidates(path, points, opts.candidates)
        return points, fitting + _new(baselines, fitting)

    points, fitting = explore()
    if not fitting and search_again(cache, target):
        points, fitting = explore()
    if not fitting:
        raise _unreachable_by_search(layers, _closest(points), target)
    verifier = Verifier(train, val, params, device, generator, batch, calibration, reference, contract)
    return verifier.choose(lambda p: make(p.setting), fitting, layers, [_point_record(layers, p) for p in points],
                           table, base)


def search_again(cache: SearchCache, target: config.BudgetConfig) -> bool:
    """Whether a search that found nothing inside a latency budget must run again on fresh timings (forgetting
    the cached ones): timings an earlier run cached may be from a slower spell of the machine (here batch-1 p95
    moved by up to 1.6x over minutes); the budget is refused only on this run's own measurements."""
    if not cache.reused or (target.latency_p95_ms is None and target.speedup is None):
        return False
    cache.forget_earlier()
    return True


def _widths(layers, setting) -> str:
    return ", ".join(f"{layer.name} {w}/{layer.width}" for layer, w in zip(layers, setting, strict=True))


def _unreachable_by_search(layers, best: width_search.Point, target: config.BudgetConfig) -> BudgetUnreachable:
    return BudgetUnreachable(
        f"no model the search can build meets target {target.limits()}: the closest, "
        f"{_widths(layers, best.setting)} in {budget.describe(best.cost)}, is over by "
        f"{'; '.join(budget.violations(best.cost, target, target.search.margin, upper=False))} (the narrowest "
        f"widths target.search.widths allows; allow narrower ones, or loosen the budget)")


def _unreachable_when_verified(verified: list[dict], target: config.BudgetConfig) -> BudgetUnreachable:
    best = min(verified, key=lambda v: v["excess"])
    return BudgetUnreachable(
        f"target {target.limits()}: {len(verified)} candidate(s) fitted while searching but none after "
        f"fine-tuning and re-measuring; the best: {budget.describe(best)}, val accuracy "
        f"{best['val_accuracy']:.4f}: {'; '.join(best['violations'])} (re-run on a quieter machine, or "
        "loosen the budget)")


@dataclass(frozen=True)
class Verifier:
    """What fine-tuning and re-measuring a candidate needs."""

    train: Split
    val: Split
    params: config.Params
    device: torch.device
    generator: torch.Generator
    batch: torch.Tensor
    calibration: np.ndarray | None
    reference: Path
    """The teacher's deployable file, timed beside each candidate in the same turns."""
    contract: object
    """The data's input contract: candidates are timed as the raw-input files the export stage writes."""

    def choose(self, build, fitting: list[width_search.Point], layers, records: list[dict], table, base: float
               ) -> SearchOutcome:
        """Each fitting point's model (`build(point)`) verified; the most accurate that still holds, as the search's
        outcome (with the `records` of every point measured), or _unreachable_when_verified when none does."""
        target = self.params.target
        verified = [self.verify(build(p), layers, p, i, len(fitting)) for i, p in enumerate(fitting, start=1)]
        accepted = [v for v in verified if v["fits"]]
        if not accepted:
            raise _unreachable_when_verified(verified, target)
        chosen = max(accepted, key=lambda v: v["val_accuracy"])

        def without_model(record: dict) -> dict:
            return {k: v for k, v in record.items() if k != "model"}

        return SearchOutcome(chosen["model"], without_model(chosen), [without_model(v) for v in verified], records,
                             table, base, {layer.name: layer.width for layer in layers},
                             {**target.limits(), "batch_size": target.batch_size, "min_accuracy": target.min_accuracy})

    def verify(self, model, layers, point: width_search.Point, index: int, total: int) -> dict:
        """Fine-tune one candidate (prune.finetune), then measure it afresh with the verification repeats."""
        ft, target = self.params.prune.finetune, self.params.target
        began = time.perf_counter()
        model = model.to(self.device)
        train_epochs(model, adam(model.parameters(), ft.lr, ft.weight_decay), len(self.train), ft.batch_size,
                     ft.epochs, regularised_loss(self.train, self.device, ft, self.params.seed + index),
                     generator=self.generator, description=f"search candidate {index}/{total} ({point.tag})",
                     lr_schedule=ft.lr_schedule)
        val_accuracy = accuracy(model, self.val)
        measured = budget.cost(model, self.batch, point.tag, budget.verify_timing(self.params), self.calibration,
                               self.reference, self.contract, self.params.export)
        problems = budget.violations(measured, target)  # the budget itself: the margin was the search's aim
        if target.min_accuracy is not None and val_accuracy < target.min_accuracy:
            problems.append(f"val accuracy {val_accuracy:.4f} < target.min_accuracy {target.min_accuracy}")
        progress.report(PHASE, f"candidate {index}/{total}, {budget.describe(measured)}",
                        {"val_accuracy": val_accuracy, "fits": "yes" if not problems else "no"}, progress.since(began))
        return {"model": model, "candidate": index, "origin": point.origin,
                "widths": {layer.name: w for layer, w in zip(layers, point.setting, strict=True)},
                "predicted_accuracy": point.predicted_accuracy, "val_accuracy": val_accuracy,
                "excess": budget.excess(measured, target), "fits": not problems,
                "violations": problems, **measured}
