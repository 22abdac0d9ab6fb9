"""Prune step: raise sparsity round by round, fine-tuning after each round.

The method (params `prune.method`, one class each in steps.compression.choices.PRUNE_METHODS) says what a
round removes; this stage owns the loop, the fine-tuning and the record:
- magnitude: zero single weights (global or per-layer threshold); masks stay
  active while fine-tuning and are folded into the weights before saving;
- structured: remove whole channels/neurons with torch-pruning's dependency
  graph, so the saved model really is smaller and faster. Its checkpoint keeps
  the original spec; the loader shrinks layers to the saved shapes.
- transformer (a vit teacher): remove whole blocks, attention heads, MLP width
  and embedding width (compression/transformer_pruning.py); the checkpoint's
  spec records the pruned per-block widths and depth. On an hf teacher, the
  same knobs cut whole layers, heads, FFN and hidden width of the transformers
  encoder (compression/families/hf/method.py); its config.json is updated, so
  stock from_pretrained reloads the pruned folder.
The teacher's family (steps.compression.families) says which methods can prune it,
and which class runs a method it prunes in its own way (Family.prune_method_classes).
The schedule gives the sparsity (fraction of weights, or of channels) after
each round; for transformer, each fraction of `prune.transformer` follows the
schedule to its final value.

With resources.processes above 1 the stage starts itself under torchrun (steps/core/launch.py), as teacher and
distill do: every rank prunes the teacher alike and fine-tunes its shard of each batch with DDP (a masked weight's
`weight_orig` is the parameter DDP averages, its `weight_mask` a buffer it broadcasts); rank 0 alone logs, saves
and writes the result.

With a budget in params.yaml (`target:`), none of that runs: the stage searches
per-layer widths and the deployable precision for the most accurate model
inside the budget (steps/prune/budget_search.py), logs the sensitivity heat-map and the
frontier, and saves the chosen candidate as the pruned model, in one process whatever
resources says. A family whose layers cannot differ names its own search
(Family.budget_search, in SEARCHES): an hf teacher's tries the uniform shapes its
config can describe (steps/prune/hf_search.py).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from steps import config, tracking
from steps.compression import measure, parallel, progress, pruning, torchrun_env
from steps.compression.families import family_of
from steps.compression.prune_method import PruneMethod
from steps.compression.training import accuracy, adam, train_epochs, validation_scores
from steps.core import datasets, launch, lineage
from steps.core.names import ModelRole
from steps.core.results import PruneResult
from steps.core.torchkit import load_model, regularised_loss, setup
from steps.prune import budget_plots, budget_search, hf_search
from steps.stagekit.finish import save_and_record, write_result
from steps.stagekit.ranks import on_ranks, stage_run

logger = logging.getLogger(__name__)


SEARCHES = {"channels": budget_search.search, "uniform_encoder": hf_search.search}
"""The budget searches by name: "channels" (per-layer widths) unless the teacher's family names its own
(Family.budget_search)."""


def method_for(model, cfg: config.PruneConfig) -> PruneMethod:
    """`prune.method` prepared on the teacher; refused, naming the family, when it cannot prune it."""
    family = family_of(model)
    if cfg.method not in family.prune_methods:
        raise ValueError(f"prune.method {cfg.method} cannot prune a {type(model).__name__} teacher (the "
                         f"{family.name} family): use prune.method {' or '.join(sorted(family.prune_methods))}")
    return family.prune_method_class(cfg.method)(model, cfg)


def run_search(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> PruneResult:
    """The budget search instead of the prune knobs; BudgetUnreachable (a clean stop) when nothing fits."""
    device, generator = setup(params)
    splits = datasets.load_splits(root, ("train", "val"))
    teacher, spec = load_model(root, ModelRole.TEACHER, device)
    family = family_of(teacher)
    if not family.budget_searchable:
        raise ValueError(f"target: the budget search cuts channels per layer, which a {family.name} teacher "
                         f"does not have; leave target unset and use prune.method "
                         f"{' or '.join(sorted(family.prune_methods))}")
    original = measure.parameters(teacher)
    with tracking.open_run(root, **lineage.stage_run(root, params, "prune", origin)) as run_id:
        search = SEARCHES[family.budget_search or "channels"]
        outcome = search(teacher, splits["train"], splits["val"], params, root, device, generator)
        record, model = outcome.record(), outcome.model
        tracking.log_dict(record, "search.json")
        for name, figure in (("sensitivity.png", budget_plots.sensitivity_figure(outcome)),
                             ("frontier.png", budget_plots.frontier_figure(outcome))):
            tracking.log_figure(figure, name)
            budget_plots.close(figure)
        chosen = outcome.chosen
        result = PruneResult(method="search", sparsity=1 - measure.parameters(model) / original,
                             parameters=measure.parameters(model), val_accuracy=chosen["val_accuracy"],
                             layer_sparsity=pruning.layer_sparsity(model), curve=[], mlflow_run_id=run_id,
                             search=record)
        save_and_record(root, "prune", ModelRole.PRUNED, model, spec,
                        {"method": "search", "precision": chosen["precision"]},
                        {"search.val_accuracy": chosen["val_accuracy"], "parameters": chosen["parameters"],
                         "search.latency_p95_high_ms": chosen["latency_p95_high_ms"],
                         "search.settings_measured": len(outcome.frontier)})
    return write_result(root, "prune", result)


def run(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> PruneResult:
    """Prune and fine-tune, the fine-tuning on resources.processes ranks under torchrun when more than one is asked
    for; with a budget (`target:`), the search instead, in one process."""
    if params.target.active:
        return _search(params, root, origin)
    return on_ranks("prune", params, root, origin, PruneResult, _prune)


def _search(params: config.Params, root: Path, origin: lineage.Origin) -> PruneResult:
    """run_search, in this process whatever resources says: it times each candidate's latency between fine-tunings,
    and a latency timed while other ranks wait or work beside it would not be the model's. One line on stderr says
    so; refused as a rank of a scheduler's torchrun, whose other ranks would each search."""
    if datasets.task(datasets.read_manifest(root)) == "causal_lm":
        raise ValueError("target: a budget search is not built for language models (data.task causal_lm); "
                         "remove target and give prune.transformer fractions")
    if torchrun_env.inside_torchrun():
        raise ValueError("target: the budget search runs in one process, not as a rank of torchrun: start "
                         "`python -m steps.prune` without torchrun, or remove target to prune on the ranks")
    if params.resources.world_size > 1:
        logger.warning("prune: target: the budget search runs in one process (resources.processes %d x nodes %d "
                       "are for the prune rounds' fine-tuning, which a budget replaces)",
                       params.resources.processes, params.resources.nodes)
    return run_search(params, root, origin)


def _prune(params: config.Params, root: Path, origin: lineage.Origin) -> PruneResult:
    """The rounds. On several ranks every rank loads the teacher and prunes it alike (the methods draw no random
    numbers; calibration rows are fixed), fine-tunes its shard of each batch under DDP, and validates the same
    model; rank 0 alone logs, saves and writes metrics/prune.json."""
    device, generator = setup(params)
    if params.resources.strategy != "ddp" and parallel.world_size() > 1 and parallel.is_main():
        logger.warning("prune: resources.strategy %s covers teacher and distill; prune's fine-tuning trains with ddp "
                       "(its pruning masks act on the model itself)", params.resources.strategy)
    splits = datasets.load_splits(root, ("train", "val"))
    train, cfg = splits["train"], params.prune
    model, spec = load_model(root, ModelRole.TEACHER, device)
    original = measure.parameters(model)
    method = method_for(model, cfg)
    main = parallel.is_main()
    curve = []
    with stage_run(root, params, "prune", origin, device) as run_id:
        before = validation_scores(model, splits["val"])  # every rank: its part of the split, the sums shared
        if main:  # one MLflow run: rank 0's
            tracking.log_metrics({"sparsity": 0.0, **before, "parameters": original}, step=0)
        for round_no, target in enumerate(method.targets(), start=1):
            began = time.perf_counter()
            method.prune_round(model, round_no, train, device)
            # Pruning replaces parameters (masks, or smaller tensors): a fresh optimizer sees the new ones.
            optimizer = adam(model.parameters(), cfg.finetune.lr, cfg.finetune.weight_decay)
            train_epochs(
                model, optimizer, len(train), cfg.finetune.batch_size, cfg.finetune.epochs,
                regularised_loss(train, device, cfg.finetune, params.seed + round_no),
                generator=generator, description=f"prune round {round_no}/{cfg.rounds} @ {target:.1%}",
                lr_schedule=cfg.finetune.lr_schedule, precision=params.resources.precision,
            )
            point = {"round": round_no, "target": target, "sparsity": method.sparsity(model),
                     "parameters": measure.parameters(model), **validation_scores(model, splits["val"])}
            curve.append(point)
            if main:
                progress.report("prune", f"round {round_no}/{cfg.rounds}",
                                {k: v for k, v in point.items() if k != "round"}, progress.since(began))
                tracking.log_metrics({k: v for k, v in point.items() if k != "round"}, step=round_no)
        method.finish(model)
        result = PruneResult(method=cfg.method, sparsity=method.sparsity(model), parameters=measure.parameters(model),
                             val_accuracy=accuracy(model, splits["val"]), layer_sparsity=pruning.layer_sparsity(model),
                             curve=curve, mlflow_run_id=run_id)
        save_and_record(root, "prune", ModelRole.PRUNED, model, spec,
                        {"method": cfg.method, "sparsity": result.sparsity, "schedule": cfg.schedule})
    return write_result(root, "prune", result)


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("prune", run, sys.argv[1:], read_spec=launch.read_spec)

