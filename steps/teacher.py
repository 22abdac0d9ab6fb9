"""Teacher step: train the large model that the others are compressed from."""

from __future__ import annotations

import sys
from pathlib import Path

from steps import config, tracking
from steps.compression import measure
from steps.compression.models import build
from steps.compression.regularization import near_zero_fraction
from steps.compression.training import accuracy, adam, train_epochs
from steps.core import datasets, lineage
from steps.core.layout import metrics_path, model_files
from steps.core.names import Artifact, ModelRole
from steps.core.results import TeacherResult
from steps.core.torchkit import regularised_loss, save_model, setup, spec_from


def run(params: config.Params, root: Path) -> TeacherResult:
    device, generator = setup(params)
    splits = datasets.load_splits(root, ("train", "val"))
    cfg = params.teacher
    spec = spec_from(cfg.arch)
    model = build(spec).to(device)
    with tracking.open_run(root, **lineage.stage_run(root, params, "teacher")) as run_id:
        name, digest = datasets.identity(root)
        train = splits["train"]
        tracking.log_dataset(name, digest, train.x[:1].numpy(), train.y[:1].numpy(), context="training")

        def on_epoch(epoch: int, loss: float) -> None:
            epoch_metrics = {"train_loss": loss, "val_accuracy": accuracy(model, splits["val"])}
            if cfg.train.l1.coefficient > 0:  # show sparsity emerging under L1
                epoch_metrics["near_zero_fraction"] = near_zero_fraction(model, cfg.train.l1.target)
            tracking.log_metrics(epoch_metrics, step=epoch)

        train_epochs(
            model, adam(model.parameters(), cfg.train.lr, cfg.train.weight_decay), len(train), cfg.train.batch_size,
            cfg.train.epochs, regularised_loss(train, device, cfg.train, params.seed),
            generator=generator, description="teacher", on_epoch=on_epoch, lr_schedule=cfg.train.lr_schedule,
        )
        result = TeacherResult(accuracy(model, splits["val"]), measure.parameters(model), run_id)
        save_model(root, ModelRole.TEACHER, model, spec, {"stage": "teacher", "val_accuracy": result.val_accuracy})
        tracking.log_metrics({"final_val_accuracy": result.val_accuracy, "parameters": result.parameters})
        tracking.log_files([root / f for f in model_files(ModelRole.TEACHER)], Artifact.MODEL_FILES)
    result.write(root / metrics_path("teacher"))
    return result


def main() -> None:
    from steps.core.stage import run_stage_main

    run_stage_main("teacher", run, sys.argv[1:])


if __name__ == "__main__":
    main()
