"""Distill step: a small student learns from the pruned teacher's soft targets.

Without augmentation the teacher's logits for a training image never change,
so they are computed once up front instead of every epoch (a teacher forward
pass costs several student steps on CPU).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from steps import config, tracking
from steps.compression import checkpoint, measure
from steps.compression.distillation import KDLoss
from steps.compression.models import build
from steps.compression.training import accuracy, adam, predict_logits, train_epochs
from steps.data import load_splits
from steps.names import ModelRole
from steps.pipeline import metrics_path
from steps.steputil import load_model, save_model, setup, spec_from


def run(params: config.Params, root: Path) -> dict:
    device, generator = setup(params)
    splits = load_splits(root, ("train", "val"))
    train = splits["train"]
    cfg = params.distill
    teacher, _ = load_model(root, ModelRole.PRUNED, device)
    teacher_logits = predict_logits(teacher, train.x)
    student_spec = spec_from(cfg.student)
    student = build(student_spec).to(device)
    kd = KDLoss(cfg.temperature, cfg.alpha)

    def step_loss(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        return kd(model(train.x[idx].to(device)), teacher_logits[idx].to(device), train.y[idx].to(device))

    with tracking.stage_run(root, params, "distill") as run_id:
        def on_epoch(epoch: int, loss: float) -> None:
            tracking.log_metrics({"train_loss": loss, "val_accuracy": accuracy(student, splits["val"])}, step=epoch)

        train_epochs(
            student, adam(student, cfg.train.lr, cfg.train.weight_decay), len(train), cfg.train.batch_size,
            cfg.train.epochs, step_loss, generator=generator, description="distill", on_epoch=on_epoch,
        )
        metrics = {
            "val_accuracy": accuracy(student, splits["val"]),
            "teacher_val_accuracy": accuracy(teacher, splits["val"]),
            "parameters": measure.parameters(student),
            "mlflow_run_id": run_id,
        }
        save_model(root, ModelRole.STUDENT, student, student_spec,
                   {"stage": "distill", "temperature": cfg.temperature, "alpha": cfg.alpha})
        tracking.log_metrics({"final_val_accuracy": metrics["val_accuracy"], "parameters": metrics["parameters"]})
        tracking.log_model_files(root, ModelRole.STUDENT)
    checkpoint.write_json(root / metrics_path("distill"), metrics)
    return metrics


def main() -> None:
    from steps.stage_main import run_stage_main

    run_stage_main("distill", run, sys.argv[1:])


if __name__ == "__main__":
    main()
