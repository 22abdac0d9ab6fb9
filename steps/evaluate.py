"""Evaluate step: teacher, pruned and student side by side on the test split."""

from __future__ import annotations

import sys
from pathlib import Path

from steps import config, tracking
from steps.compression import checkpoint, measure
from steps.compression.training import accuracy, seed_everything
from steps.data import load_splits
from steps.names import ModelRole
from steps.pipeline import PLOTS_DIR, REPORT, model_path
from steps.report import close_figure, frame, pareto_figure
from steps.steputil import load_model


def static_metrics(root: Path, role: ModelRole, model, test, batch) -> dict:
    """Everything but latency: accuracy, sizes, MACs, peak memory."""
    weights = root / model_path(role)
    return {
        "accuracy": accuracy(model, test),
        "parameters": measure.parameters(model),
        "nonzeros": measure.nonzeros(model),
        "file_bytes": measure.file_size(weights),
        "compressed_bytes": measure.compressed_size(weights),
        "macs": measure.macs(model, test.x[:1]),
        "peak_memory_bytes": measure.peak_memory_bytes(model, batch),
    }


def measure_models(models: dict[str, tuple[Path, ModelRole]], test, cfg: config.EvaluateConfig,
                   threads: int) -> dict[str, dict]:
    """{name: metrics} for models given as (project root, role); latency timed side by side."""
    batch = test.x[: cfg.latency_batch_size]
    loaded = {name: load_model(root, role)[0] for name, (root, role) in models.items()}
    results = {name: static_metrics(*models[name], model, test, batch) for name, model in loaded.items()}
    latency = measure.latency_ms(loaded, batch, cfg.latency_warmup, cfg.latency_repeats, threads)
    first = next(iter(results))
    for name, metrics in results.items():
        metrics["latency_p50_ms"], metrics["latency_p95_ms"] = latency[name]["p50"], latency[name]["p95"]
        metrics["param_ratio"] = metrics["nonzeros"] / results[first]["nonzeros"]
        metrics["speedup"] = results[first]["latency_p50_ms"] / metrics["latency_p50_ms"]
        metrics["mac_reduction"] = results[first]["macs"] / metrics["macs"]
    return results


def run(params: config.Params, root: Path) -> dict:
    seed_everything(params.seed, params.threads)
    test = load_splits(root, ("test",))["test"]
    cfg = params.evaluate
    # The teacher comes first: ratios (speedup, MAC reduction) are relative to it.
    models = measure_models({role.value: (root, role) for role in ModelRole}, test, cfg, params.threads)
    report = {"models": models, "threads": params.threads, "latency_batch_size": min(cfg.latency_batch_size, len(test)),
              "test_images": len(test)}
    figure = pareto_figure(report)
    (root / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    figure.savefig(root / PLOTS_DIR / "pareto.png", dpi=120)
    with tracking.stage_run(root, params, "evaluate") as run_id:
        tracking.log_metrics({f"{role}.{k}": v for role, m in models.items() for k, v in m.items()})
        tracking.log_table(frame(report).reset_index(), "comparison.json")
        tracking.log_figure(figure, "pareto.png")
        report["mlflow_run_id"] = run_id
    close_figure(figure)
    checkpoint.write_json(root / REPORT, report)
    return report


def main() -> None:
    from rich.console import Console

    from steps.report import table
    from steps.stage_main import run_stage_main

    def run_and_print(params: config.Params, root: Path) -> dict:
        report = run(params, root)
        Console().print(table(report))
        return report

    run_stage_main("evaluate", run_and_print, sys.argv[1:])


if __name__ == "__main__":
    main()
