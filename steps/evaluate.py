"""Evaluate step: teacher, pruned and student side by side on the test split."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from steps import config, tracking
from steps.compression import checkpoint, measure
from steps.compression.training import accuracy, seed_everything
from steps.data import load_splits
from steps.names import ModelRole
from steps.pipeline import PLOTS_DIR, REPORT, metrics_path, model_path, onnx_path
from steps.quantize import FP32
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


EAGER, ONNXRUNTIME = "eager", "onnxruntime"


def batch_key(size: int) -> str:
    return f"batch_{size}"


def latencies(models: dict, onnx_files: dict[str, Path], batches: dict[str, object], cfg: config.EvaluateConfig,
              threads: int) -> dict[str, dict]:
    """{backend: {batch key: {name: {p50, p95}}}}: eager models and ONNX files, each set timed interleaved."""
    out: dict[str, dict] = {EAGER: {}, ONNXRUNTIME: {}}
    for key, batch in batches.items():
        out[EAGER][key] = measure.latency_ms(models, batch, cfg.latency_warmup, cfg.latency_repeats, threads)
        if onnx_files:
            out[ONNXRUNTIME][key] = measure.onnx_latency_ms(onnx_files, batch.numpy(), cfg.latency_warmup,
                                                            cfg.latency_repeats, threads)
    return out


def measure_models(models: dict[str, tuple[Path, ModelRole]], test, cfg: config.EvaluateConfig, threads: int,
                   onnx_files: dict[str, Path] | None = None) -> dict[str, dict]:
    """{name: metrics} for models given as (project root, role); latency timed side by side."""
    return measure_all(models, test, cfg, threads, onnx_files)[0]


def measure_all(models: dict[str, tuple[Path, ModelRole]], test, cfg: config.EvaluateConfig, threads: int,
                onnx_files: dict[str, Path] | None = None) -> tuple[dict[str, dict], dict[str, dict]]:
    """({name: metrics}, all timings {backend: {batch key: {name: {p50, p95}}}}).

    Latency is PyTorch eager and, for the files in `onnx_files` (which may
    include files with no PyTorch model, e.g. int8 ones), ONNX Runtime, at
    batch 1 and at `latency_batch_size`. The headline `latency_p50_ms`,
    `latency_p95_ms` and `speedup` use `cfg.latency_backend` (eager when no
    ONNX files are given).
    """
    big = test.x[: cfg.latency_batch_size]
    batches = {batch_key(1): test.x[:1], batch_key(len(big)): big}
    loaded = {name: load_model(root, role)[0] for name, (root, role) in models.items()}
    results = {name: static_metrics(*models[name], model, test, big) for name, model in loaded.items()}
    timed = latencies(loaded, onnx_files or {}, batches, cfg, threads)
    backend = cfg.latency_backend if onnx_files else EAGER
    first = next(iter(results))
    for name, metrics in results.items():
        metrics["latency"] = timings_of(timed, name)
        if onnx_files and name in onnx_files:
            metrics["onnx_bytes"] = measure.file_size(onnx_files[name])
        headline = metrics["latency"][backend][batch_key(len(big))]
        metrics["latency_p50_ms"], metrics["latency_p95_ms"] = headline["p50"], headline["p95"]
        metrics["param_ratio"] = metrics["nonzeros"] / results[first]["nonzeros"]
        metrics["speedup"] = results[first]["latency_p50_ms"] / metrics["latency_p50_ms"]
        metrics["mac_reduction"] = results[first]["macs"] / metrics["macs"]
    return results, timed


def timings_of(timed: dict[str, dict], name: str) -> dict[str, dict]:
    """{backend: {batch key: {p50, p95}}} of one model or file, for the backends that timed it."""
    return {backend: {key: per_name[name] for key, per_name in by_batch.items()}
            for backend, by_batch in timed.items() if by_batch and all(name in p for p in by_batch.values())}


def onnx_name(variant: str) -> str:
    """The name evaluate times a student ONNX file under: the student itself for fp32, else student.<method>."""
    return ModelRole.STUDENT.value if variant == FP32 else f"{ModelRole.STUDENT}.{variant}"


def deploy_variants(quantized: dict, timed: dict[str, dict]) -> dict[str, dict]:
    """The student's ONNX files (fp32 and int8): accuracy and size from the quantize step, ORT latency from here."""
    return {variant: {**v, "latency": timings_of(timed, onnx_name(variant))[ONNXRUNTIME]}
            for variant, v in quantized["variants"].items()}


def run(params: config.Params, root: Path) -> dict:
    seed_everything(params.seed, params.threads)
    test = load_splits(root, ("test",))["test"]
    cfg = params.evaluate
    quantized = json.loads((root / metrics_path("quantize")).read_text())
    # One ORT timing run for every file: the three fp32 models and the student's int8 variants.
    onnx_files = {role.value: root / onnx_path(role) for role in ModelRole}
    onnx_files |= {onnx_name(name): root / v["file"] for name, v in quantized["variants"].items() if name != FP32}
    # The teacher comes first: ratios (speedup, MAC reduction) are relative to it.
    models, timed = measure_all({role.value: (root, role) for role in ModelRole}, test, cfg, params.threads, onnx_files)
    report = {"models": models, "threads": params.threads, "latency_batch_size": min(cfg.latency_batch_size, len(test)),
              "latency_backend": cfg.latency_backend, "test_images": len(test),
              "deploy": {"deployable": quantized["deploy"], "file": quantized["deployable"],
                         "variants": deploy_variants(quantized, timed)}}
    figure = pareto_figure(report)
    (root / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    figure.savefig(root / PLOTS_DIR / "pareto.png", dpi=120)
    with tracking.stage_run(root, params, "evaluate") as run_id:
        # "student.accuracy", "student.latency.onnxruntime.batch_1.p50", "deploy.static.accuracy", ...
        tracking.log_metrics(numeric_leaves({**models, "deploy": report["deploy"]["variants"]}))
        tracking.log_table(frame(report).reset_index(), "comparison.json")
        tracking.log_figure(figure, "pareto.png")
        report["mlflow_run_id"] = run_id
    close_figure(figure)
    checkpoint.write_json(root / REPORT, report)
    return report


def numeric_leaves(tree: dict) -> dict[str, float]:
    """{"teacher.latency.eager.batch_1.p50": 0.3, ...}: every number in a nested dict, for MLflow."""
    return {key: float(value) for key, value in tracking.flatten(tree).items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def main() -> None:
    from rich.console import Console

    from steps.report import table
    from steps.stage_main import run_stage_main

    def run_and_print(params: config.Params, root: Path) -> dict:
        report = run(params, root)
        Console(width=None if Console().is_terminal else 160).print(table(report))  # the table is wide
        return report

    run_stage_main("evaluate", run_and_print, sys.argv[1:])


if __name__ == "__main__":
    main()
