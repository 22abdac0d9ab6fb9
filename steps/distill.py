"""Distill step: a small student learns from a teacher's soft targets.

The teacher is the pruned model (prune-then-distill, the default) or the
unpruned one (`distill.teacher`), so each path can be compared alone. With a
budget (`target:`), the student is the model the budget search chose (the
pruned model, which fits the budget) and the unpruned teacher distills into it;
`distill.student` and `distill.teacher` are then unused. With
logits only, the teacher's outputs for a training image never change, so they
are computed once up front (a teacher forward pass costs several student
steps on CPU). Feature hints and attention transfer need the teacher's
intermediate activations per batch, so they run the teacher alongside.
A vit student can also learn the teacher's attention distributions
(`distill.attention_maps`, MiniLM) and hidden states (`distill.hidden_states`,
TinyBERT) through one `TransformerObjective`; from a teacher that is not a
vit (a CNN), the hidden-state term matches the pooled features the two
classifier heads see.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from steps import config, tracking
from steps.compression import augment, measure
from steps.compression.distillation import DistillationObjective, KDLoss
from steps.compression.features import FeatureTap
from steps.compression.transformer_distillation import TransformerObjective, attention_pairs, hidden_pairs, layer_map
from steps.compression.vit import ViT
from steps.compression.training import Split, StepLoss, accuracy, adam, predict_logits, train_epochs
from steps.core import datasets, lineage
from steps.core.layout import metrics_path, model_files
from steps.core.names import Artifact, ModelRole
from steps.core.results import DistillResult
from steps.core.torchkit import build_for, load_model, save_model, setup, spec_from


def _pairs(section: config.FeatureLossConfig) -> list[tuple[str, str]]:
    return [(p.student, p.teacher) for p in section.layers] if section.weight > 0 else []


def pooled_layer(model: torch.nn.Module) -> str:
    """The module whose output the final Linear reads: "pool" for a vit, the sibling before the last Linear
    of a Sequential classifier otherwise (a CNN's last hidden ReLU, or its Flatten)."""
    if isinstance(model, ViT):
        return "pool"
    modules = dict(model.named_modules())
    last = [name for name, m in modules.items() if isinstance(m, torch.nn.Linear)][-1]
    parent, _, index = last.rpartition(".")
    if not index.isdigit() or int(index) == 0 or not isinstance(modules[parent], torch.nn.Sequential):
        raise ValueError(f"distill.hidden_states: cannot find the features {type(model).__name__}'s output layer "
                         f"{last!r} reads (it is not inside a Sequential after another layer)")
    return f"{parent}.{int(index) - 1}" if parent else str(int(index) - 1)


def vit_pairs(cfg: config.DistillConfig, student, teacher) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(attention map pairs, hidden state pairs) of a vit student, blocks paired by each term's layer map."""
    maps, hidden = cfg.attention_maps, cfg.hidden_states
    if (maps.weight > 0 or hidden.weight > 0) and not isinstance(student, ViT):
        raise ValueError("distill.attention_maps and distill.hidden_states need a vit student")
    if maps.weight > 0 and not isinstance(teacher, ViT):
        raise ValueError(f"distill.attention_maps needs a vit teacher; the {cfg.teacher} model is a "
                         f"{type(teacher).__name__} (use distill.hidden_states: pooled features)")

    def blocks(name: str) -> list[tuple[int, int]]:
        return layer_map(name, len(student.blocks), len(teacher.blocks))

    map_pairs = attention_pairs(blocks(maps.layer_map)) if maps.weight > 0 else []
    if hidden.weight == 0:
        return map_pairs, []
    if isinstance(teacher, ViT):
        return map_pairs, hidden_pairs(blocks(hidden.layer_map))
    return map_pairs, [("pool", pooled_layer(teacher))]


def logits_only_loss(cfg: config.DistillConfig, teacher, train: Split, device) -> StepLoss:
    """KD against the teacher's logits, computed once for the whole (unaugmented) training set."""
    kd = KDLoss(cfg.temperature, cfg.alpha)
    teacher_logits = predict_logits(teacher, train.x)

    def step(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        x, y = train.batch(idx, device)
        return kd(model(x), teacher_logits[idx].to(device), y)

    return step


def feature_loss(objective: DistillationObjective, teacher, train: Split, device, augment=None) -> StepLoss:
    """KD on logits plus hint/attention terms on the layers the objective names; with `augment`, teacher
    and student see the same augmented batch ("consistent teaching", Beyer et al. 2022)."""
    teacher.eval()

    def step(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        x, y = train.batch(idx, device, augment)
        with torch.no_grad(), FeatureTap(teacher, objective.teacher_layers) as t_tap:
            t_logits = teacher(x)
            t_feats = dict(t_tap.outputs)  # the tap forgets its outputs on exit
        with FeatureTap(model, objective.student_layers) as s_tap:
            s_logits = model(x)
            s_feats = dict(s_tap.outputs)
        return objective(s_logits, t_logits, y, s_feats, t_feats)

    return step


def run(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> DistillResult:
    device, generator = setup(params)
    splits = datasets.load_splits(root, ("train", "val"))
    train, cfg = splits["train"], params.distill
    # With a budget the search chose the student (the pruned model) and the unpruned teacher distills into it.
    budgeted = params.target.active
    teacher_role = ModelRole.PRUNED if cfg.teacher == "pruned" and not budgeted else ModelRole.TEACHER
    # The teacher loads first: rebuilding it draws from the seeded RNG, so the student's initialisation
    # (drawn next) is the one every earlier run of these params had.
    teacher, _ = load_model(root, teacher_role, device)
    if budgeted:
        student, student_spec = load_model(root, ModelRole.PRUNED, device)
    else:
        student_spec = spec_from(cfg.student, root)
        student = build_for(root, student_spec, train.x).to(device)
    hints, attention = _pairs(cfg.hints), _pairs(cfg.attention)
    maps, hidden = vit_pairs(cfg, student, teacher)
    trainable = list(student.parameters())
    if hints or attention or maps or hidden or cfg.train.augment:  # the teacher runs on every (augmented) batch
        objective = TransformerObjective.from_models(
            student, teacher, train.x[:2].to(device), cfg.temperature, cfg.alpha,
            hints, attention, cfg.hints.weight, cfg.attention.weight,
            attention_map_layers=maps, hidden_layers=hidden, attention_map_weight=cfg.attention_maps.weight,
            hidden_weight=cfg.hidden_states.weight).to(device)
        trainable += list(objective.parameters())  # hint regressors learn with the student
        augmenter = augment.for_training(cfg.train.augment, params.seed)
        step_loss = feature_loss(objective, teacher, train, device, augmenter)
    else:
        step_loss = logits_only_loss(cfg, teacher, train, device)

    with tracking.open_run(root, **lineage.stage_run(root, params, "distill", origin)) as run_id:
        def on_epoch(epoch: int, loss: float) -> None:
            tracking.log_metrics({"train_loss": loss, "val_accuracy": accuracy(student, splits["val"])}, step=epoch)

        optimizer = adam(trainable, cfg.train.lr, cfg.train.weight_decay)
        train_epochs(student, optimizer, len(train), cfg.train.batch_size, cfg.train.epochs, step_loss,
                     generator=generator, description="distill", on_epoch=on_epoch,
                     lr_schedule=cfg.train.lr_schedule)
        result = DistillResult(teacher=teacher_role.value, val_accuracy=accuracy(student, splits["val"]),
                               teacher_val_accuracy=accuracy(teacher, splits["val"]),
                               parameters=measure.parameters(student), mlflow_run_id=run_id)
        save_model(root, ModelRole.STUDENT, student, student_spec,
                   {"stage": "distill", "teacher": teacher_role.value, "temperature": cfg.temperature,
                    "alpha": cfg.alpha})
        tracking.log_metrics({"final_val_accuracy": result.val_accuracy, "parameters": result.parameters})
        tracking.log_files([root / f for f in model_files(ModelRole.STUDENT)], Artifact.MODEL_FILES)
    result.write(root / metrics_path("distill"))
    return result


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("distill", run, sys.argv[1:])


if __name__ == "__main__":
    main()
