"""Distill step: a small student learns from a teacher's soft targets.

The teacher is the pruned model (prune-then-distill, the default) or the
unpruned one (`distill.teacher`), so each path can be compared alone. The
student is a new model (`distill.student: {name: ..., ...}`) or the pruned
model itself (`distill.student: {name: pruned}`, taught by the unpruned
teacher: Minitron's prune-then-distill). With a budget (`target:`), the student
is the model the budget search chose (the pruned model, which fits the budget)
and the unpruned teacher distills into it; `distill.student` and
`distill.teacher` are then unused.

The loss is a weighted sum of named terms (steps/compression/distillation/,
built from params in objective.py): soft targets and hard labels always,
FitNets hints, attention transfer, attention maps (MiniLM) and hidden states
(TinyBERT) when weighted. With logits only, the teacher's outputs for a
training image never change, so they are computed once up front (a teacher
forward pass costs several student steps on CPU). Terms on intermediate
activations need the teacher's activations per batch, so it runs alongside.
Text inputs are named tensors (input_ids, attention_mask), passed to the models
as keyword arguments; their attention mask keeps padding out of the terms that
count tokens.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from steps import config, tracking
from steps.compression import augment, measure, parallel
from steps.compression.distillation.features import FeatureTap
from steps.compression.distillation.objective import WeightedSum
from steps.compression.training import (
    Split,
    StepLoss,
    accuracy,
    adam,
    forward,
    is_language_model,
    predict_logits,
    rows,
    to_device,
    token_mask,
    train_epochs,
    validation_scores,
)
from steps.core import datasets, launch, lineage
from steps.core.names import ModelRole
from steps.core.results import DistillResult
from steps.core.torchkit import build_for, check_augmentable, load_model, setup, spec_from
from steps.distill.objective import build_objective
from steps.stagekit.finish import save_and_record, write_result
from steps.stagekit.ranks import on_ranks, stage_run


def logits_only_loss(objective: WeightedSum, teacher, train: Split, device) -> StepLoss:
    """The objective against the teacher's logits, computed once for the whole (unaugmented) training set."""
    teacher_logits = predict_logits(teacher, train.x)

    def step(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        x, y = train.batch(idx, device)
        return objective(forward(model, x), teacher_logits[idx].to(device), y)

    return step


def feature_loss(objective: WeightedSum, teacher, train: Split, device, augment=None) -> StepLoss:
    """The objective on logits and on the layers it names, the teacher run on every batch; with `augment`,
    teacher and student see the same augmented batch ("consistent teaching", Beyer et al. 2022)."""
    teacher.eval()

    def step(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        x, y = train.batch(idx, device, augment)
        with torch.no_grad(), FeatureTap(teacher, objective.teacher_layers) as t_tap:
            t_logits = forward(teacher, x)
            t_feats = dict(t_tap.outputs)  # the tap forgets its outputs on exit
        with FeatureTap(parallel.unwrap(model), objective.student_layers) as s_tap:  # the layers, under DDP too
            s_logits = forward(model, x)
            s_feats = dict(s_tap.outputs)
        # the terms over real tokens apart: ranks weigh them by their share of the batch's tokens (TokenMean)
        return objective.token_mean(s_logits, t_logits, y, s_feats, t_feats, token_mask(x))

    return step


def run(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> DistillResult:
    """Distill the student; on resources.processes ranks under torchrun when more than one is asked for (each
    rank runs the teacher on its shard of every batch, or scores the training set up front for logits only)."""
    return on_ranks("distill", params, root, origin, DistillResult, _distill)


def _distill(params: config.Params, root: Path, origin: lineage.Origin) -> DistillResult:
    device, generator = setup(params)
    splits = datasets.load_splits(root, ("train", "val"))
    train, cfg = splits["train"], params.distill
    check_augmentable(train.x, cfg.train.augment)
    # With a budget the search chose the student (the pruned model) and the unpruned teacher distills into it;
    # a pruned student ({name: pruned}) has the unpruned teacher too (its config refuses distill.teacher: pruned).
    budgeted = params.target.active
    from_pruned = budgeted or cfg.student_is_pruned
    teacher_role = ModelRole.PRUNED if cfg.teacher == "pruned" and not from_pruned else ModelRole.TEACHER
    # The teacher loads first: rebuilding it draws from the seeded RNG, so the student's initialisation
    # (drawn next) is the one every earlier run of these params had.
    teacher, _ = load_model(root, teacher_role, device)
    if from_pruned:
        student, student_spec = load_model(root, ModelRole.PRUNED, device)
    else:
        student_spec = spec_from(cfg.student, root)
        student = build_for(root, student_spec, train.x).to(device)
    # The terms' own weights (hint regressors, hidden projections) are drawn next and learn with the student.
    example = to_device(rows(train.x, slice(0, 2)), device)
    objective = build_objective(cfg, student, teacher, teacher_role.value, example).to(device)
    trainable = [*student.parameters(), *objective.parameters()]
    # the teacher runs on every (augmented) batch; a language model's logits for every training token would not fit
    if objective.student_layers or cfg.train.augment or is_language_model(train):
        step_loss = feature_loss(objective, teacher, train, device, augment.for_training(cfg.train.augment,
                                                                                         params.seed))
    else:
        step_loss = logits_only_loss(objective, teacher, train, device)

    with stage_run(root, params, "distill", origin, device) as run_id:
        def on_epoch(epoch: int, loss: float) -> dict[str, float]:
            # every rank: each scores its part of the split (the plain student, not DDP's wrapper); rank 0 logs
            epoch_metrics = {"train_loss": loss, **validation_scores(student, splits["val"])}
            if parallel.is_main():
                tracking.log_metrics(epoch_metrics, step=epoch)
            return epoch_metrics

        optimizer = adam(trainable, cfg.train.lr, cfg.train.weight_decay)
        train_epochs(student, optimizer, len(train), cfg.train.batch_size, cfg.train.epochs, step_loss,
                     generator=generator, description="distill", on_epoch=on_epoch,
                     lr_schedule=cfg.train.lr_schedule, precision=params.resources.precision,
                     strategy=params.resources.strategy)
        result = DistillResult(teacher=teacher_role.value, val_accuracy=accuracy(student, splits["val"]),
                               teacher_val_accuracy=accuracy(teacher, splits["val"]),
                               parameters=measure.parameters(student), mlflow_run_id=run_id)
        save_and_record(root, "distill", ModelRole.STUDENT, student, student_spec,
                        {"teacher": teacher_role.value, "temperature": cfg.temperature, "alpha": cfg.alpha},
                        {"final_val_accuracy": result.val_accuracy, "parameters": result.parameters})
    return write_result(root, "distill", result)


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("distill", run, sys.argv[1:], read_spec=launch.read_spec)
