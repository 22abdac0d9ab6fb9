"""Prune step: raise sparsity round by round, fine-tuning after each round.

The schedule gives the sparsity after each round; masks stay active while
fine-tuning (pruned weights stay zero) and are folded into the weights
before saving.
"""

from __future__ import annotations

import sys
from pathlib import Path

from steps import config, tracking
from steps.compression import checkpoint, pruning
from steps.compression.schedules import get_schedule
from steps.compression.training import accuracy, adam, cross_entropy_loss, train_epochs
from steps.data import load_splits
from steps.names import ModelRole
from steps.pipeline import metrics_path
from steps.steputil import load_model, save_model, setup


def run(params: config.Params, root: Path) -> dict:
    device, generator = setup(params)
    splits = load_splits(root, ("train", "val"))
    cfg = params.prune
    model, spec = load_model(root, ModelRole.TEACHER, device)
    schedule = get_schedule(cfg.schedule)(cfg.target_sparsity, cfg.rounds)
    curve = []
    with tracking.stage_run(root, params, "prune") as run_id:
        tracking.log_metrics({"sparsity": 0.0, "val_accuracy": accuracy(model, splits["val"])}, step=0)
        optimizer = adam(model, cfg.finetune.lr, cfg.finetune.weight_decay)
        for round_no, target in enumerate(schedule, start=1):
            pruning.prune_magnitude(model, target, cfg.scope)
            # Pruning re-parametrises weights (weight_orig * mask): rebuild the optimizer's view.
            optimizer = adam(model, cfg.finetune.lr, cfg.finetune.weight_decay)
            train_epochs(
                model, optimizer, len(splits["train"]), cfg.finetune.batch_size, cfg.finetune.epochs,
                cross_entropy_loss(splits["train"], device),
                generator=generator, description=f"prune round {round_no}/{cfg.rounds} @ {target:.1%}",
            )
            point = {"round": round_no, "sparsity": pruning.sparsity(model), "val_accuracy": accuracy(model, splits["val"])}
            curve.append(point)
            tracking.log_metrics({"sparsity": point["sparsity"], "val_accuracy": point["val_accuracy"]}, step=round_no)
        pruning.fold(model)
        metrics = {
            "sparsity": pruning.sparsity(model),
            "val_accuracy": accuracy(model, splits["val"]),
            "layer_sparsity": pruning.layer_sparsity(model),
            "curve": curve,
            "mlflow_run_id": run_id,
        }
        save_model(root, ModelRole.PRUNED, model, spec,
                   {"stage": "prune", "sparsity": metrics["sparsity"], "schedule": cfg.schedule})
        tracking.log_model_files(root, ModelRole.PRUNED)
    checkpoint.write_json(root / metrics_path("prune"), metrics)
    return metrics


def main() -> None:
    from steps.stage_main import run_stage_main

    run_stage_main("prune", run, sys.argv[1:])


if __name__ == "__main__":
    main()
