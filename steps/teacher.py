"""Teacher step: train the large model that the others are compressed from."""

from __future__ import annotations

import sys
from pathlib import Path

from steps import config, tracking
from steps.compression import checkpoint, measure
from steps.compression.models import build
from steps.compression.training import accuracy, adam, cross_entropy_loss, train_epochs
from steps.data import load_splits
from steps.names import ModelRole
from steps.pipeline import metrics_path
from steps.steputil import save_model, setup, spec_from


def run(params: config.Params, root: Path) -> dict:
    device, generator = setup(params)
    splits = load_splits(root, ("train", "val"))
    cfg = params.teacher
    spec = spec_from(cfg.arch)
    model = build(spec).to(device)
    with tracking.stage_run(root, params, "teacher") as run_id:
        tracking.log_dataset(root, splits["train"], context="training")

        def on_epoch(epoch: int, loss: float) -> None:
            tracking.log_metrics({"train_loss": loss, "val_accuracy": accuracy(model, splits["val"])}, step=epoch)

        train_epochs(
            model, adam(model, cfg.train.lr, cfg.train.weight_decay), len(splits["train"]), cfg.train.batch_size,
            cfg.train.epochs, cross_entropy_loss(splits["train"], device),
            generator=generator, description="teacher", on_epoch=on_epoch,
        )
        metrics = {
            "val_accuracy": accuracy(model, splits["val"]),
            "parameters": measure.parameters(model),
            "mlflow_run_id": run_id,
        }
        save_model(root, ModelRole.TEACHER, model, spec, {"stage": "teacher", "val_accuracy": metrics["val_accuracy"]})
        tracking.log_metrics({"final_val_accuracy": metrics["val_accuracy"], "parameters": metrics["parameters"]})
        tracking.log_model_files(root, ModelRole.TEACHER)
    checkpoint.write_json(root / metrics_path("teacher"), metrics)
    return metrics


def main() -> None:
    from steps.stage_main import run_stage_main

    run_stage_main("teacher", run, sys.argv[1:])


if __name__ == "__main__":
    main()
