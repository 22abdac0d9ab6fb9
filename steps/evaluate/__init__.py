"""Evaluate step: teacher, pruned and student side by side on the test split."""

from __future__ import annotations

import sys
from pathlib import Path

from steps import config, tracking
from steps.compression.training import resolve_device, seed_everything
from steps.core import budget, datasets, lineage
from steps.core.layout import FP32, PLOTS_DIR, REPORT, metrics_path, onnx_path
from steps.core.measurement import ONNXRUNTIME, clocks, measure_all, timings_of
from steps.core.names import ModelRole
from steps.evaluate.perclass import class_recall, recall_frame
from steps.core.reports import close_figure, frame, report_figure
from steps.core.torchkit import load_model
from steps.core.results import EvaluateReport, PruneResult, QuantizeResult, flatten


def onnx_name(variant: str) -> str:
    """The name evaluate times a student ONNX file under: the student itself for fp32, else student.<method>."""
    return ModelRole.STUDENT.value if variant == FP32 else f"{ModelRole.STUDENT}.{variant}"


def deploy_variants(quantized: dict, timed: dict[str, dict]) -> dict[str, dict]:
    """The student's ONNX files (fp32 and int8): accuracy and size from the quantize step, ORT latency from here."""
    return {variant: {**v, "latency": timings_of(timed, onnx_name(variant))[ONNXRUNTIME]}
            for variant, v in quantized["variants"].items()}


def run(params: config.Params, root: Path, origin: lineage.Origin = lineage.STANDALONE) -> EvaluateReport:
    if datasets.task(datasets.read_manifest(root)) == "causal_lm":
        from steps.evaluate import language  # imports this module's numeric_leaves

        return language.run(params, root, origin)
    seed_everything(params.seed, params.threads)
    test = datasets.load_splits(root, ("test",))["test"]
    cfg = params.evaluate
    quantized = QuantizeResult.read(root / metrics_path("quantize")).to_dict()
    # One ORT timing run for every file: the three fp32 models and the student's int8 variants.
    onnx_files = {role.value: root / onnx_path(role) for role in ModelRole}
    onnx_files |= {onnx_name(name): root / v["file"] for name, v in quantized["variants"].items() if name != FP32}
    # The teacher comes first: ratios (speedup, MAC reduction) are relative to it.
    device = resolve_device(params.device)  # on CUDA, latency is the GPU's (measurement.clocks says how timed)
    models, timed = measure_all({role.value: (root, role) for role in ModelRole}, test, cfg, params.threads, onnx_files,
                                device)
    # recall per class, named by the manifest (issue 16): the per-class table and promote's per-class gate read it
    class_names = list(datasets.read_manifest(root)["classes"])
    for role in ModelRole:
        models[role.value]["class_recall"] = class_recall(load_model(root, role)[0], test, class_names)
    report = {"models": models, "threads": params.threads, "latency_batch_size": min(cfg.latency_batch_size, len(test)),
              "latency_backend": cfg.latency_backend, "latency_clocks": clocks(device), "test_images": len(test),
              "deploy": {"deployable": quantized["deploy"], "file": quantized["deployable"],
                         "variants": deploy_variants(quantized, timed)}}
    report["target"] = budget_check(params, root, test, quantized)
    figure = report_figure(report, point_labels(params))
    (root / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    figure.savefig(root / PLOTS_DIR / "pareto.png", dpi=120)
    with tracking.open_run(root, **lineage.stage_run(root, params, "evaluate", origin)) as run_id:
        # "student.accuracy", "student.latency.onnxruntime.batch_1.p50", "deploy.static.accuracy", ...
        # class_recall goes as a table: class names are the dataset's, not always valid metric names
        scalars = {name: {k: v for k, v in m.items() if k != "class_recall"} for name, m in models.items()}
        tracking.log_metrics(numeric_leaves({**scalars, "deploy": report["deploy"]["variants"]}))
        tracking.set_tags({f"latency.{backend}": clock for backend, clock in report["latency_clocks"].items()})
        tracking.log_table(frame(report).reset_index(), "comparison.json")
        tracking.log_table(recall_frame(models).reset_index(), "per_class_recall.json")
        tracking.log_figure(figure, "pareto.png")
    close_figure(figure)
    result = EvaluateReport(**report, mlflow_run_id=run_id)
    result.write(root / REPORT)
    return result


def budget_check(params: config.Params, root: Path, test, quantized: dict) -> dict | None:
    """With a budget (params `target:`): the deployable file timed on the budget's terms (its batch size, the
    search's verification timing, beside the teacher's file), each limit's verdict, and a sentence for each
    limit not passed; None without one."""
    limits = params.target
    if not limits.active:
        return None
    batch = budget.timed_batch(test, limits.batch_size)
    # beside the teacher's file, in the same turns and windows as the search verified it (steps/core/latency.py)
    measured = {"precision": quantized["deploy"],
                **budget.file_cost(root / quantized["deployable"], batch, budget.verify_timing(params),
                                   reference=root / onnx_path(ModelRole.TEACHER)),
                **budget.counts(load_model(root, ModelRole.STUDENT)[0], batch)}
    measured["machine_vs_search"] = machine_vs_search(root, measured)
    return {"budget": {**limits.limits(), "batch_size": limits.batch_size}, "measured": measured,
            "verdicts": budget.verdicts(measured, limits), "violations": budget.violations(measured, limits)}


def machine_vs_search(root: Path, measured: dict) -> float | None:
    """How much slower (> 1) the teacher's file read now than when the budget search verified the chosen model
    beside it: the machine's drift between the two measurements, which an absolute latency budget inherits."""
    search = PruneResult.read(root / metrics_path("prune")).search or {}
    then = (search.get("chosen") or {}).get("reference_p95_ms")
    return measured["reference_p95_ms"] / then if then else None


def point_labels(params: config.Params) -> dict[str, str]:
    """What made each model, for the points of the plot a person reads."""
    arch, prune, student = params.teacher.arch, params.prune, params.distill.student

    def shape(spec) -> str:
        return f"{spec.name} {'-'.join(map(str, spec.widths))}".strip()  # hf: no widths to name

    if params.target.active:
        budget_text = ", ".join(f"{k} {v:g}" for k, v in params.target.limits().items())
        return {ModelRole.TEACHER.value: f"teacher ({shape(arch)})",
                ModelRole.PRUNED.value: f"searched for {budget_text}",
                ModelRole.STUDENT.value: "student (teacher distilled into the searched widths)"}
    made = "the pruned model" if params.distill.student_is_pruned else shape(student)
    return {ModelRole.TEACHER.value: f"teacher ({shape(arch)})",
            ModelRole.PRUNED.value: f"pruned ({prune.method} {prune.target_sparsity:.0%})",
            ModelRole.STUDENT.value: f"student ({made}, from {params.distill.teacher})"}


def numeric_leaves(tree: dict) -> dict[str, float]:
    """{"teacher.latency.eager.batch_1.p50": 0.3, ...}: every number in a nested dict, for MLflow."""
    return {key: float(value) for key, value in flatten(tree).items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def main() -> None:
    from rich.console import Console

    from steps.core.reports import table
    from steps.core.stage import run_stage_main

    def run_and_print(params: config.Params, root: Path) -> EvaluateReport:
        report = run(params, root)
        Console(width=None if Console().is_terminal else 160).print(table(report.to_dict()))  # the table is wide
        return report

    run_stage_main("evaluate", run_and_print, sys.argv[1:])

