"""Teacher step: train the large model that the others are compressed from."""

from __future__ import annotations

import sys
from pathlib import Path

from steps import config, tracking
from steps.compression import checkpoint, measure
from steps.compression.models import build
from steps.compression.regularization import near_zero_fraction
from steps.compression.training import accuracy, adam, train_epochs
from steps.data import load_splits
from steps.names import ModelRole
from steps.pipeline import metrics_path
from steps.steputil import regularised_loss, save_model, setup, spec_from


def run(params: config.Params, root: Path) -> dict:
    device, generator = setup(params)
    splits = load_splits(root, ("train", "val"))
    cfg = params.teacher
    spec = spec_from(cfg.arch)
    model = build(spec).to(device)
    with tracking.stage_run(root, params, "teacher") as run_id:
        tracking.log_dataset(root, splits["train"], context="training")

        def on_epoch(epoch: int, loss: float) -> None:
            epoch_metrics = {"train_loss": loss, "val_accuracy": accuracy(model, splits["val"])}
            if cfg.train.l1.coefficient > 0:  # show sparsity emerging under L1
                epoch_metrics["near_zero_fraction"] = near_zero_fraction(model, cfg.train.l1.target)
            tracking.log_metrics(epoch_metrics, step=epoch)

        train_epochs(
            model, adam(model.parameters(), cfg.train.lr, cfg.train.weight_decay), len(splits["train"]), cfg.train.batch_size,
            cfg.train.epochs, regularised_loss(splits["train"], device, cfg.train, params.seed),
            generator=generator, description="teacher", on_epoch=on_epoch, lr_schedule=cfg.train.lr_schedule,
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
