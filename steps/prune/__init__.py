"""Prune step: raise sparsity round by round, fine-tuning after each round.

Two methods share the loop (params `prune.method`):
- magnitude: zero single weights (global or per-layer threshold); masks stay
  active while fine-tuning and are folded into the weights before saving;
- structured: remove whole channels/neurons with torch-pruning's dependency
  graph, so the saved model really is smaller and faster. Its checkpoint keeps
  the original spec; the loader shrinks layers to the saved shapes.
- transformer (a vit teacher): remove whole blocks, attention heads, MLP width
  and embedding width (compression/transformer_pruning.py); the checkpoint's
  spec records the pruned per-block widths and depth.
The schedule gives the sparsity (fraction of weights, or of channels) after
each round; for transformer, each fraction of `prune.transformer` follows the
schedule to its final value.

With a budget in params.yaml (`target:`), none of that runs: the stage searches
per-layer widths and the deployable precision for the most accurate model
inside the budget (steps/prune/budget_search.py), logs the sensitivity heat-map and the
frontier, and saves the chosen candidate as the pruned model.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from steps import config, tracking
from steps.compression import measure, pruning, structured
from steps.compression import transformer_pruning as tp_vit
from steps.compression.vit import ViT, model_layout
from steps.compression.schedules import get_schedule
from steps.compression.training import Split, accuracy, adam, train_epochs
from steps.core import datasets, lineage
from steps.prune import budget_plots, budget_search
from steps.core.layout import metrics_path, model_files
from steps.core.names import Artifact, ModelRole
from steps.core.results import PruneResult
from steps.core.torchkit import load_model, regularised_loss, save_model, setup

CALIBRATION_IMAGES = 256
"""Images whose gradients rank channels for data-driven (Taylor) importance."""


def transformer_fractions(cfg: config.PruneConfig) -> list[tp_vit.TransformerPruning]:
    """The cumulative fractions of the original vit removed after each round: every nonzero fraction of
    `prune.transformer` follows `prune.schedule` to its final value."""
    t, schedule = cfg.transformer, get_schedule(cfg.schedule)

    def steps(final: float) -> list[float]:
        return schedule(final, cfg.rounds) if final > 0 else [0.0] * cfg.rounds

    return [tp_vit.TransformerPruning(depth=d, heads=h, mlp=m, embedding=e, importance=t.importance,
                                      global_heads=t.global_heads, depth_metric=t.depth_metric, round_to=cfg.round_to)
            for d, h, m, e in zip(steps(t.depth), steps(t.heads), steps(t.mlp), steps(t.embedding), strict=True)]


def _transformer_round(model: ViT, fractions: tp_vit.TransformerPruning, original, train: Split, device) -> None:
    calibration = train.batch(torch.arange(min(CALIBRATION_IMAGES, len(train))), device)
    example = calibration[0][:2]
    # Blocks first: the global head target counts the blocks that remain.
    depth_only = dataclasses.replace(tp_vit.round_plan(original, model, fractions), heads=0, mlp=0, embedding=0)
    tp_vit.prune_transformer(model, example, depth_only, calibration)
    tp_vit.prune_transformer(model, example, tp_vit.round_plan(original, model, fractions), calibration)


def _check_method(model, cfg: config.PruneConfig) -> None:
    if (cfg.method == "transformer") != isinstance(model, ViT) and cfg.method != "magnitude":
        raise ValueError(f"prune.method {cfg.method} cannot prune a {type(model).__name__} teacher: "
                         f"use prune.method transformer for a vit (teacher.arch.name: vit), structured otherwise")


def _prune_round(model, cfg: config.PruneConfig, target: float, previous: float, train: Split,
                 original_widths: dict) -> None:
    if cfg.method == "magnitude":
        pruning.prune_magnitude(model, target, cfg.scope)
        return
    amount = structured.channel_keep_amounts([previous, target])[-1]
    if amount <= 0:  # e.g. one-shot: later rounds only fine-tune
        return
    calibration = (train.x[:CALIBRATION_IMAGES], train.y[:CALIBRATION_IMAGES])
    # Per layer: widths from the original ones, so `round_to` rounding does not compound over rounds.
    widths = None if cfg.scope == "global" else structured.target_widths(original_widths, target, cfg.round_to)
    structured.prune_channels(model, train.x[:2], amount, cfg.importance, calibration=calibration,
                              global_pruning=cfg.scope == "global", widths=widths, round_to=cfg.round_to)


def _measured_sparsity(model, cfg: config.PruneConfig, original_params: int) -> float:
    """Fraction of weights that are zero (magnitude) or that no longer exist (structured)."""
    if cfg.method == "magnitude":
        return pruning.sparsity(model)
    return 1 - measure.parameters(model) / original_params


def run_search(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> PruneResult:
    """The budget search instead of the prune knobs; BudgetUnreachable (a clean stop) when nothing fits."""
    device, generator = setup(params)
    splits = datasets.load_splits(root, ("train", "val"))
    teacher, spec = load_model(root, ModelRole.TEACHER, device)
    if isinstance(teacher, ViT):
        raise ValueError("target: the budget search cuts channels of cnn, mlp, resnet and custom teachers; "
                         "a vit teacher is pruned with prune.method transformer (leave target unset)")
    original = measure.parameters(teacher)
    with tracking.open_run(root, **lineage.stage_run(root, params, "prune", origin)) as run_id:
        outcome = budget_search.search(teacher, splits["train"], splits["val"], params, root, device, generator)
        record, model = outcome.record(), outcome.model
        tracking.log_dict(record, "search.json")
        for name, figure in (("sensitivity.png", budget_plots.sensitivity_figure(outcome)),
                             ("frontier.png", budget_plots.frontier_figure(outcome))):
            tracking.log_figure(figure, name)
            budget_plots.close(figure)
        chosen = outcome.chosen
        tracking.log_metrics({"search.val_accuracy": chosen["val_accuracy"], "parameters": chosen["parameters"],
                              "search.latency_p95_high_ms": chosen["latency_p95_high_ms"],
                              "search.settings_measured": len(outcome.frontier)})
        result = PruneResult(method="search", sparsity=1 - measure.parameters(model) / original,
                             parameters=measure.parameters(model), val_accuracy=chosen["val_accuracy"],
                             layer_sparsity=pruning.layer_sparsity(model), curve=[], mlflow_run_id=run_id,
                             search=record)
        save_model(root, ModelRole.PRUNED, model, spec,
                   {"stage": "prune", "method": "search", "precision": chosen["precision"]})
        tracking.log_files([root / f for f in model_files(ModelRole.PRUNED)], Artifact.MODEL_FILES)
    result.write(root / metrics_path("prune"))
    return result


def run(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> PruneResult:
    if params.target.active:
        return run_search(params, root, origin)
    device, generator = setup(params)
    splits = datasets.load_splits(root, ("train", "val"))
    train, cfg = splits["train"], params.prune
    model, spec = load_model(root, ModelRole.TEACHER, device)
    original = measure.parameters(model)
    schedule = get_schedule(cfg.schedule)(cfg.target_sparsity, cfg.rounds)
    _check_method(model, cfg)
    original_widths = structured.layer_widths(model) if cfg.method == "structured" else {}
    fractions = transformer_fractions(cfg) if cfg.method == "transformer" else []
    original_layout = model_layout(model) if fractions else None
    if fractions:  # the curve's "target": the largest fraction a round has reached (prune.target_sparsity is unused)
        schedule = [max(f.depth, f.heads, f.mlp, f.embedding) for f in fractions]
    curve, previous = [], 0.0
    with tracking.open_run(root, **lineage.stage_run(root, params, "prune", origin)) as run_id:
        tracking.log_metrics({"sparsity": 0.0, "val_accuracy": accuracy(model, splits["val"]),
                              "parameters": original}, step=0)
        for round_no, target in enumerate(schedule, start=1):
            if fractions:
                _transformer_round(model, fractions[round_no - 1], original_layout, train, device)
            else:
                _prune_round(model, cfg, target, previous, train, original_widths)
            previous = target
            # Pruning replaces parameters (masks, or smaller tensors): a fresh optimizer sees the new ones.
            optimizer = adam(model.parameters(), cfg.finetune.lr, cfg.finetune.weight_decay)
            train_epochs(
                model, optimizer, len(train), cfg.finetune.batch_size, cfg.finetune.epochs,
                regularised_loss(train, device, cfg.finetune, params.seed + round_no),
                generator=generator, description=f"prune round {round_no}/{cfg.rounds} @ {target:.1%}",
                lr_schedule=cfg.finetune.lr_schedule,
            )
            point = {"round": round_no, "target": target, "sparsity": _measured_sparsity(model, cfg, original),
                     "parameters": measure.parameters(model), "val_accuracy": accuracy(model, splits["val"])}
            curve.append(point)
            tracking.log_metrics({k: v for k, v in point.items() if k != "round"}, step=round_no)
        pruning.fold(model)
        result = PruneResult(method=cfg.method, sparsity=_measured_sparsity(model, cfg, original),
                             parameters=measure.parameters(model), val_accuracy=accuracy(model, splits["val"]),
                             layer_sparsity=pruning.layer_sparsity(model), curve=curve, mlflow_run_id=run_id)
        save_model(root, ModelRole.PRUNED, model, spec,
                   {"stage": "prune", "method": cfg.method, "sparsity": result.sparsity, "schedule": cfg.schedule})
        tracking.log_files([root / f for f in model_files(ModelRole.PRUNED)], Artifact.MODEL_FILES)
    result.write(root / metrics_path("prune"))
    return result


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("prune", run, sys.argv[1:])


if __name__ == "__main__":
    main()


