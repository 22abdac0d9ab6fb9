"""Compression benchmark: every technique side by side on the same data and teacher, over seeds.

    .venv/bin/python benchmarks/compression.py            # full Fashion-MNIST, default params (~10 min, 2 cores)
    .venv/bin/python benchmarks/compression.py --recipe benchmarks/recipes/fashion-93.yaml --seeds 3
                                                          # the README's recipe, mean ± sd over 3 seeds
    .venv/bin/python benchmarks/compression.py --quick    # tiny settings: checks that it runs

Runs the pipeline's own step functions (no Prefect, no registry) in a scratch
directory: per seed one data split and one teacher, then each variant in its
own project copy. Seeds may train in parallel processes (--jobs, one torch
thread each; on 2 cores this was slower than --jobs 1); afterwards every model is exported to ONNX and timed in this one
process with `threads` threads, one seed after another, teacher first, so the
latency ratios compare like with like on an otherwise idle machine. Writes a
dated JSON + Markdown table to benchmarks/results/.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import statistics
from pathlib import Path

# This script's folder is on sys.path when it runs.
import common
from base_project import done, seed_project, train_base
from common import merge

from steps import config, distill, export, prune
from steps.core import datasets
from steps.core.measurement import EAGER, ONNXRUNTIME, batch_key, measure_models
from steps.core.names import ModelRole
from steps.core.torchkit import load_model

# The rows issue #8's goals are checked on.
UNSTRUCTURED = "unstructured 91% (cubic, global)"
STRUCTURED = "structured 25% channels, widths multiples of 16 (L1, per layer)"
ALONE, DISTILLED = "student alone (labels only)", "student distilled from teacher"
MATCHED = "structured to the student's size (70%, multiples of 16)"
PRUNE_THEN_DISTILL = "prune-then-distill (structured teacher)"

# 32/64/128 channels and 256 neurons -> 16/48/96 and 192: 2.1x fewer MACs. Widths that are multiples of 16
# fit ONNX Runtime's blocked conv kernels; unrounded widths (e.g. 21/42/83 at 35%) ran slower than the teacher.
_STRUCTURED = {"method": "structured", "importance": "l1", "target_sparsity": 0.25, "round_to": 16,
               "schedule": "linear", "rounds": 2, "scope": "layer"}
# name -> (params overrides, which model of that run to report)
VARIANTS: dict[str, tuple[dict, ModelRole]] = {
    # 91% of the prunable weights is 90.4% of all parameters (biases and BatchNorm are not pruned).
    UNSTRUCTURED: ({"prune": {"method": "magnitude", "target_sparsity": 0.91, "schedule": "cubic", "rounds": 4}},
                   ModelRole.PRUNED),
    STRUCTURED: ({"prune": _STRUCTURED}, ModelRole.PRUNED),
    ALONE: ({"distill": {"teacher": "teacher", "alpha": 0.0}}, ModelRole.STUDENT),
    DISTILLED: ({"distill": {"teacher": "teacher"}}, ModelRole.STUDENT),
    MATCHED: ({"prune": {**_STRUCTURED, "target_sparsity": 0.7, "rounds": 3}}, ModelRole.PRUNED),
    PRUNE_THEN_DISTILL: ({"prune": _STRUCTURED, "distill": {"teacher": "pruned"}}, ModelRole.STUDENT),
}
Models = dict[str, tuple[Path, ModelRole]]


def quick(raw: dict) -> dict:
    """Tiny settings: a few hundred images, one epoch each."""
    return merge(raw, {
        "data": {"val_size": 200, "train_limit": 600, "test_limit": 300},
        "teacher": {"train": {"epochs": 1}}, "prune": {"finetune": {"epochs": 1}},
        "distill": {"train": {"epochs": 1}},
        "evaluate": {"latency_batch_size": 32, "latency_warmup": 1, "latency_repeats": 3},
    })


def run_variant(root: Path, params: config.Params, overrides: dict) -> None:
    if "prune" in overrides or overrides.get("distill", {}).get("teacher") == "pruned":
        prune.run(params, root)
    if "distill" in overrides:
        distill.run(params, root)


def train_seed(work: Path, raw: dict) -> Models:
    """The teacher and every variant for `raw`'s seed, under `work`: {name: (project root, role)}."""
    base, _ = train_base(work, raw)
    models: Models = {"teacher": (base, ModelRole.TEACHER)}
    for i, (name, (overrides, role)) in enumerate(VARIANTS.items()):
        root, variant_raw = work / f"variant{i}", merge(raw, overrides)
        if not done(root, role, variant_raw):
            root.mkdir()
            run_variant(root, seed_project(root, base, variant_raw), overrides)
        models[name] = (root, role)
    return models


def measure_seed(work: Path, models: Models, params: config.Params) -> list[dict]:
    """Every model exported to ONNX (parity-checked), then all timed side by side, eager and ONNX Runtime."""
    test = datasets.load_splits(models["teacher"][0], ("test",))["test"]
    onnx_files = {}
    for i, (name, (root, role)) in enumerate(models.items()):
        onnx_files[name] = work / "onnx" / f"{i}.onnx"
        onnx_files[name].parent.mkdir(exist_ok=True)
        export.export_one(load_model(root, role)[0], test.x, test.y, onnx_files[name], params.export, params.threads)
    measured = measure_models(models, test, params.evaluate, params.threads, onnx_files)  # teacher first
    return [{"name": name, **m, **ratios(m, measured["teacher"])} for name, m in measured.items()]


def ratios(m: dict, reference: dict) -> dict:
    """Speedups at the latency batch size per backend, and each per unit of MAC reduction."""
    out = {}
    for backend in (EAGER, ONNXRUNTIME):
        key = batch_key(max(int(k.split("_")[1]) for k in m["latency"][backend]))
        speedup = reference["latency"][backend][key]["p50"] / m["latency"][backend][key]["p50"]
        out[f"{backend}_speedup"], out[f"{backend}_speedup_per_mac"] = speedup, speedup / m["mac_reduction"]
    return out


def benchmark(work: Path, raw: dict, seeds: list[int], jobs: int) -> list[list[dict]]:
    """Per seed, its rows; training in `jobs` processes, timing here, one seed after another."""
    if jobs == 1:
        trained = {seed: train_seed(work / f"seed{seed}", {**raw, "seed": seed}) for seed in seeds}
    else:
        context = multiprocessing.get_context("spawn")  # no torch/OpenMP state inherited through fork
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = {seed: pool.submit(train_seed, work / f"seed{seed}", {**raw, "seed": seed, "threads": 1})
                       for seed in seeds}
            trained = {seed: future.result() for seed, future in futures.items()}
    params = config.validate(raw)
    return [measure_seed(work / f"seed{seed}", trained[seed], params) for seed in seeds]


SUMMED = ("accuracy", "parameters", "nonzeros", "macs", "file_bytes", "compressed_bytes", "latency_p50_ms",
          "mac_reduction", "eager_speedup", "eager_speedup_per_mac", "onnxruntime_speedup",
          "onnxruntime_speedup_per_mac")


def summarise(per_seed: list[list[dict]]) -> list[dict]:
    """One row per model: means over seeds, plus the accuracy's and the loss's per-seed values."""
    teacher = [rows[0]["accuracy"] for rows in per_seed]
    summary = []
    for i, first in enumerate(per_seed[0]):
        runs = [rows[i] for rows in per_seed]
        row = {key: statistics.fmean(r[key] for r in runs) for key in SUMMED}
        row["name"] = first["name"]
        row["accuracies"] = [r["accuracy"] for r in runs]
        row["losses_pt"] = [(t - a) * 100 for t, a in zip(teacher, row["accuracies"], strict=True)]
        row["accuracy_sd"] = statistics.stdev(row["accuracies"]) if len(runs) > 1 else 0.0
        summary.append(row)
    return summary


def _pt(values: list[float]) -> str:
    return ", ".join(f"{v:+.2f}" for v in values)


def goals(rows: list[dict]) -> list[str]:
    """Issue #8's quality goals, on the means over seeds, each with the numbers that meet it or not."""
    r = {row["name"]: row for row in rows}
    t, u, s, a, d = r["teacher"], r[UNSTRUCTURED], r[STRUCTURED], r[ALONE], r[DISTILLED]
    loss = {name: statistics.fmean(row["losses_pt"]) for name, row in r.items()}
    gain = [(x - y) * 100 for x, y in zip(d["accuracies"], a["accuracies"], strict=True)]
    sparsity = 1 - u["nonzeros"] / u["parameters"]
    checks = [
        ("teacher >= 92.5%", t["accuracy"] >= 0.925, f"{t['accuracy']:.2%}"),
        ("unstructured >= 90% sparsity, <= 0.3 pt loss", sparsity >= 0.9 and loss[UNSTRUCTURED] <= 0.3,
         f"{sparsity:.1%} of all parameters zero, {loss[UNSTRUCTURED]:+.2f} pt loss (per seed {_pt(u['losses_pt'])})"),
        ("structured >= 2x fewer MACs, <= 0.5 pt loss, ONNX Runtime speedup >= 0.8x MAC reduction",
         s["mac_reduction"] >= 2 and loss[STRUCTURED] <= 0.5 and s["onnxruntime_speedup_per_mac"] >= 0.8,
         f"{s['mac_reduction']:.2f}x MACs, {loss[STRUCTURED]:+.2f} pt loss (per seed {_pt(s['losses_pt'])}), "
         f"ratio {s['onnxruntime_speedup_per_mac']:.2f} (eager {s['eager_speedup_per_mac']:.2f})"),
        ("distilled student <= 1/10 params, <= 1.5 pt below teacher, >= 0.5 pt above alone",
         d["parameters"] <= t["parameters"] / 10 and loss[DISTILLED] <= 1.5 and statistics.fmean(gain) >= 0.5,
         f"{d['parameters'] / t['parameters']:.1%} params, {loss[DISTILLED]:+.2f} pt loss (per seed "
         f"{_pt(d['losses_pt'])}), {statistics.fmean(gain):+.2f} pt vs alone (per seed {_pt(gain)})"),
    ]
    at_size = {name: r[name]["accuracy"] for name in (MATCHED, DISTILLED, PRUNE_THEN_DISTILL)}
    best = max(at_size, key=at_size.get)
    lines = [f"- {name}: {'met' if ok else 'NOT met'} ({numbers})" for name, ok, numbers in checks]
    return lines + [f"- at the student's size the best is {best}: "
                    + ", ".join(f"{name} {acc:.2%}" for name, acc in at_size.items())]


def table(rows: list[dict]) -> str:
    head = ("| model | accuracy (mean ± sd) | loss pt | params | non-zeros | MACs | size KB | zlib KB | ORT p50 ms "
            "| ORT speedup | eager speedup | MAC reduction | ORT speedup / MAC red. | eager speedup / MAC red. |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "\n".join(
        f"| {r['name']} | {r['accuracy']:.2%} ± {r['accuracy_sd'] * 100:.2f} | "
        f"{statistics.fmean(r['losses_pt']):+.2f} | {r['parameters']:,.0f} | "
        f"{r['nonzeros']:,.0f} | {r['macs'] / 1e6:.2f}M | {r['file_bytes'] / 1024:,.0f} | "
        f"{r['compressed_bytes'] / 1024:,.0f} | {r['latency_p50_ms']:.2f} | {r['onnxruntime_speedup']:.2f}x | "
        f"{r['eager_speedup']:.2f}x | {r['mac_reduction']:.2f}x | {r['onnxruntime_speedup_per_mac']:.2f} | "
        f"{r['eager_speedup_per_mac']:.2f} |"
        for r in rows
    ) + "\n"


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--seeds", type=int, default=1, help="seeds params.seed, +1, ...: each its own teacher")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel (one torch thread each)")
    parser.add_argument("--work", type=Path, help="keep the models in this folder (default: a temporary one) and "
                        "reuse those an interrupted run with the same params finished")
    args = parser.parse_args()
    raw = common.params(args, quick)
    seeds = [raw["seed"] + i for i in range(args.seeds)]
    if args.work:  # kept afterwards; models an interrupted run finished are reused
        args.work.mkdir(parents=True, exist_ok=True)
        per_seed = benchmark(args.work, raw, seeds, args.jobs)
    else:
        per_seed = common.in_scratch("shrinkflow-bench-", lambda work, r: benchmark(work, r, seeds, args.jobs), raw)
    report(per_seed, raw, args)


def report(per_seed: list[list[dict]], raw: dict, args) -> None:
    rows = summarise(per_seed)
    text = (table(rows) + f"\nGoals (issue #8, means over {len(per_seed)} seed(s); loss = teacher minus model, "
            "in points):\n\n" + "\n".join(goals(rows)) + "\n")
    batch = raw["evaluate"]["latency_batch_size"]
    note = (f"{len(per_seed)} seed(s) trained with {'1 thread each' if args.jobs > 1 else str(raw['threads']) + ' threads'}; "
            f"latency timed with {raw['threads']} threads at batch {batch} (ORT = ONNX Runtime fp32, the deployable form).")
    common.report(args, "compression", "Compression benchmark", text, {"rows": rows, "per_seed": per_seed}, note=note,
                  threads=raw["threads"], latency_batch_size=batch, seeds=len(per_seed), params=raw)


if __name__ == "__main__":
    main()
