"""The two arms of the budget benchmark (benchmarks/budget.py): the hand-set models, trained as the searched one is
(prune.finetune, then distill.train epochs from the teacher), and the pipeline run with the budget set."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch
import yaml

from common import merge

from steps import config, distill, evaluate, export, prune, quantize
from steps.compression import rounding, width_search
from steps.compression.families import build
from steps.compression.training import adam, train_epochs
from steps.core import budget, datasets
from steps.core.layout import metrics_path
from steps.core.names import ModelRole
from steps.core.results import QuantizeResult
from steps.core.torchkit import load_model, regularised_loss, setup, spec_from
from steps.distill.objective import build_objective

UNIFORM = (0.75, 0.5, 0.25)
"""Hand-set: fractions of every layer's channels kept."""
PRECISIONS = ("fp32", "dynamic")


def onnx_test_accuracy(model, precision: str, test, calibration) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        path = budget.deployable_file(model.cpu().eval(), test.x[:1], precision, Path(scratch), calibration)
        return quantize.onnx_accuracy(path, test.x.numpy(), test.y.numpy(), 2)


def distill_into(student, params: config.Params, root: Path) -> torch.nn.Module:
    """The training the searched model gets: prune.finetune, then distill.train epochs from the teacher."""
    device, generator = setup(params)
    train = datasets.load_splits(root, ("train",))["train"]
    teach, _ = load_model(root, ModelRole.TEACHER, device)
    ft, cfg = params.prune.finetune, params.distill
    student = student.to(device)
    if ft.epochs:
        train_epochs(student, adam(student.parameters(), ft.lr, ft.weight_decay), len(train), ft.batch_size,
                     ft.epochs, regularised_loss(train, device, ft, params.seed), generator=generator,
                     description="hand-set fine-tune", lr_schedule=ft.lr_schedule)
    objective = build_objective(cfg, student, teach, ModelRole.TEACHER.value, train.x[:2].to(device)).to(device)
    train_epochs(student, adam(student.parameters(), cfg.train.lr, cfg.train.weight_decay), len(train),
                 cfg.train.batch_size, cfg.train.epochs, distill.logits_only_loss(objective, teach, train, device),
                 generator=generator, description="hand-set distill", lr_schedule=cfg.train.lr_schedule)
    return student.cpu().eval()


def hand_set(params: config.Params, root: Path) -> dict[str, torch.nn.Module]:
    """{label: trained model}: uniform widths of the teacher, and the default student architecture."""
    teach, _ = load_model(root, ModelRole.TEACHER)
    train = datasets.load_splits(root, ("train",))["train"]
    layers = width_search.layers_of(teach, list(UNIFORM), round_to=8)
    models = {}
    for fraction in UNIFORM:
        setting = tuple(rounding.keep(layer.width, fraction, 8) for layer in layers)
        pruned = width_search.build(teach, layers, setting, train.x[:2], "l1")
        models[f"uniform {fraction:.0%} ({'/'.join(map(str, setting))})"] = distill_into(pruned, params, root)
    spec = spec_from(params.distill.student, root)
    torch.manual_seed(params.seed)
    models[f"default student ({'/'.join(map(str, [*spec.channels, *spec.hidden]))})"] = distill_into(
        build(spec), params, root)
    return models


def hand_set_files(models, root: Path, out: Path) -> list[dict]:
    """Each hand-set model in each precision as its deployable ONNX file under `out`, with its test accuracy."""
    splits = datasets.load_splits(root, ("train", "test"))
    test, calibration = splits["test"], splits["train"].x[:256].numpy()
    rows = []
    for i, (label, model) in enumerate(models.items()):
        for precision in PRECISIONS:
            folder = out / f"hand{i}-{precision}"
            folder.mkdir(parents=True)
            path = budget.deployable_file(model.cpu().eval(), test.x[:1], precision, folder, calibration)
            rows.append({"model": label, "precision": precision, "file": str(path),
                         "accuracy": quantize.onnx_accuracy(path, test.x.numpy(), test.y.numpy(), 2)})
    return rows


def searched(params_raw: dict, root: Path, limit: float, batch_size: int, out: Path) -> dict:
    """The pipeline with the budget set: prune searches, then distill, export, quantize, evaluate (which
    re-measures the deployable on the budget's terms); the deployable is kept in `out` for the side-by-side."""
    raw = merge(params_raw, {"target": {"latency_p95_ms": limit, "batch_size": batch_size}})
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    params = config.validate(raw)
    start = time.perf_counter()
    try:
        found = prune.run(params, root).search
    except ValueError as err:  # BudgetUnreachable
        return {"unreachable": str(err), "search_s": time.perf_counter() - start}
    search_s = time.perf_counter() - start
    for stage in (distill, export, quantize):
        stage.run(params, root)
    report = evaluate.run(params, root)
    quantized = QuantizeResult.read(root / metrics_path("quantize"))
    out.mkdir(parents=True)
    kept = shutil.copy2(root / quantized.deployable, out / Path(quantized.deployable).name)
    chosen = found["chosen"]
    return {"widths": "/".join(str(chosen["widths"][layer]) for layer in found["layers"]),
            "precision": chosen["precision"], "file": str(kept),
            "accuracy": quantized.variants[chosen["precision"]]["accuracy"], "evaluate": report.target["measured"],
            "evaluate_violations": report.target["violations"], "search_s": search_s,
            "settings_measured": len(found["frontier"]), "total_s": time.perf_counter() - start}
