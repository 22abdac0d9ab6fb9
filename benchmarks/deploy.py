"""Deployment benchmark: each model as PyTorch eager, ONNX Runtime fp32, dynamic int8 and static int8.

    .venv/bin/python benchmarks/deploy.py                        # default params, full Fashion-MNIST
    .venv/bin/python benchmarks/deploy.py --train-limit 20000    # fewer training images (quicker, less accurate)
    .venv/bin/python benchmarks/deploy.py --quick                # tiny settings: checks that it runs

Trains one teacher with the pipeline's own step functions (no Prefect, no
registry) in a scratch directory, then: the default magnitude-pruned teacher,
a structurally pruned one (50% of channels, L1) and the default distilled
student. Each is exported (parity-checked) and quantized as the pipeline does,
then timed at batch 1 and 256: all eager models interleaved, then all ONNX
files interleaved, in this one process. Accuracy is on the whole test split.
Also records which ONNX Runtime kernels take the time (its profiler), to say
why an int8 file is slower. Writes a dated JSON + Markdown file to
benchmarks/results/.

Goals (issue 9): the student in its deployable form >= 10x faster than the
eager teacher at batch 256 with <= 1 pt accuracy loss; structured pruning's
ONNX Runtime speedup at batch 1 >= 0.7 of its MAC reduction.
"""

from __future__ import annotations

from pathlib import Path

# The shared helpers and the compression benchmark's: this script's folder is on sys.path when it runs.
import common
from common import merge
from base_project import seed_project, train_base
from compression import quick

from steps import config, distill, export, prune
from steps.compression import measure, onnx_export, quantization
from steps.compression.training import accuracy
from steps.core import datasets
from steps.core.names import ModelRole
from steps.core.torchkit import load_model

STRUCTURED = {"prune": {"method": "structured", "importance": "l1", "target_sparsity": 0.5, "schedule": "linear",
                        "rounds": 2, "scope": "layer"}}
FORMATS = ("eager", "fp32", "dynamic", "static")
BATCHES = (1, 256)


def train_models(work: Path, raw: dict) -> dict[str, tuple[Path, ModelRole]]:
    """teacher, pruned (default params), structured, student (default params): {name: (root, role)}."""
    base, params = train_base(work, raw)
    prune.run(params, base)
    distill.run(params, base)
    structured = work / "structured"
    structured.mkdir()
    prune.run(seed_project(structured, base, merge(raw, STRUCTURED)), structured)
    return {"teacher": (base, ModelRole.TEACHER), "pruned": (base, ModelRole.PRUNED),
            "structured": (structured, ModelRole.PRUNED), "student": (base, ModelRole.STUDENT)}


def build_files(work: Path, models: dict, params: config.Params) -> dict[str, dict[str, Path]]:
    """{model: {fp32|dynamic|static: ONNX file}}, exported and quantized as the pipeline's stages do."""
    base = work / "base"
    test = datasets.load_splits(base, ("test",))["test"]
    train_x = datasets.load_splits(base, ("train",))["train"].x.numpy()
    calibration = quantization.calibration_slice(train_x, min(params.quantize.calibration_images, len(train_x)),
                                                 params.seed)
    files: dict[str, dict[str, Path]] = {}
    for name, (root, role) in models.items():
        fp32 = work / "onnx" / f"{name}.onnx"
        export.export_one(load_model(root, role)[0], test.x, test.y, fp32, params.export, params.threads)
        files[name] = {"fp32": fp32}
        for method in quantization.METHODS:
            files[name][method] = work / "onnx" / f"{name}.{method}.onnx"
            quantization.quantize(fp32, files[name][method], method, calibration)
    return files


def benchmark(work: Path, raw: dict) -> dict:
    params = config.validate(raw)
    models = train_models(work, raw)
    files = build_files(work, models, params)
    test = datasets.load_splits(work / "base", ("test",))["test"]
    loaded = {name: load_model(root, role)[0] for name, (root, role) in models.items()}
    ev = params.evaluate
    rows: dict[str, dict] = {name: {"macs": measure.macs(m, test.x[:1]), "parameters": measure.parameters(m),
                                    "formats": {}} for name, m in loaded.items()}
    for name, model in loaded.items():
        rows[name]["formats"]["eager"] = {"accuracy": accuracy(model, test),
                                          "file_bytes": measure.file_size(models[name][0] / f"models/{models[name][1]}"
                                                                          ".safetensors")}
        for fmt, path in files[name].items():
            logits = onnx_export.predict(onnx_export.session(path, params.threads), test.x.numpy())
            rows[name]["formats"][fmt] = {"accuracy": float((logits.argmax(1) == test.y.numpy()).mean()),
                                          "file_bytes": measure.file_size(path)}
    flat_files = {f"{name}/{fmt}": path for name, by_fmt in files.items() for fmt, path in by_fmt.items()}
    for size in BATCHES:
        batch = test.x[:size]
        eager = measure.latency_ms(loaded, batch, ev.latency_warmup, ev.latency_repeats, params.threads)
        ort = measure.onnx_latency_ms(flat_files, batch.numpy(), ev.latency_warmup, ev.latency_repeats, params.threads)
        for name in rows:
            rows[name]["formats"]["eager"][f"batch_{size}"] = eager[name]
            for fmt in files[name]:
                rows[name]["formats"][fmt][f"batch_{size}"] = ort[f"{name}/{fmt}"]
    profile = {f"{name}/{fmt}": quantization.op_times_ms(files[name][fmt], test.x[:256].numpy(), params.threads, 10)
               for name in ("teacher", "student") for fmt in ("fp32", "dynamic", "static")}
    return {"rows": rows, "goals": goals(rows, params.quantize.deploy), "op_times_ms_batch_256": profile}


def goals(rows: dict, deploy: str) -> dict:
    teacher_eager = rows["teacher"]["formats"]["eager"]
    student = rows["student"]["formats"][deploy]
    speedup = teacher_eager["batch_256"]["p50"] / student["batch_256"]["p50"]
    loss = teacher_eager["accuracy"] - student["accuracy"]
    mac_reduction = rows["teacher"]["macs"] / rows["structured"]["macs"]
    ort_teacher, ort_structured = rows["teacher"]["formats"]["fp32"], rows["structured"]["formats"]["fp32"]
    b1 = ort_teacher["batch_1"]["p50"] / ort_structured["batch_1"]["p50"]
    b256 = ort_teacher["batch_256"]["p50"] / ort_structured["batch_256"]["p50"]
    return {
        "student_deployable": deploy,
        "student_speedup_vs_eager_teacher_b256": speedup, "student_accuracy_loss_pt": loss * 100,
        "student_goal_met": speedup >= 10 and loss <= 0.01,
        "structured_ort_speedup_b1": b1, "structured_mac_reduction": mac_reduction,
        "structured_speedup_per_mac_reduction_b1": b1 / mac_reduction,
        "structured_goal_met": b1 / mac_reduction >= 0.7,
        "structured_ort_speedup_b256": b256, "structured_speedup_per_mac_reduction_b256": b256 / mac_reduction,
    }


def table(result: dict) -> str:
    head = "| model | format | accuracy | size KB | b1 p50 ms | b1 p95 ms | b256 p50 ms | b256 p95 ms | vs eager b256 |\n"
    lines = [head + "|---|---|---|---|---|---|---|---|---|"]
    for name, row in result["rows"].items():
        eager = row["formats"]["eager"]["batch_256"]["p50"]
        for fmt in FORMATS:
            f = row["formats"][fmt]
            lines.append(f"| {name} | {'eager (safetensors)' if fmt == 'eager' else 'ORT ' + fmt} | "
                         f"{f['accuracy']:.2%} | {f['file_bytes'] / 1024:,.0f} | {f['batch_1']['p50']:.3f} | "
                         f"{f['batch_1']['p95']:.3f} | {f['batch_256']['p50']:.2f} | {f['batch_256']['p95']:.2f} | "
                         f"{eager / f['batch_256']['p50']:.2f}x |")
    g = result["goals"]
    lines += ["", f"- student ({g['student_deployable']} ONNX) vs eager teacher at batch 256: "
                  f"{g['student_speedup_vs_eager_teacher_b256']:.1f}x faster, accuracy "
                  f"{-g['student_accuracy_loss_pt']:+.2f} pt vs the teacher (goal >= 10x and a loss <= 1 pt: "
                  f"{'met' if g['student_goal_met'] else 'NOT met'})",
              f"- structured pruning, ONNX Runtime fp32 at batch 1: {g['structured_ort_speedup_b1']:.2f}x faster at "
              f"{g['structured_mac_reduction']:.2f}x fewer MACs = {g['structured_speedup_per_mac_reduction_b1']:.2f} "
              f"(goal >= 0.7: {'met' if g['structured_goal_met'] else 'NOT met'}); at batch 256: "
              f"{g['structured_ort_speedup_b256']:.2f}x = {g['structured_speedup_per_mac_reduction_b256']:.2f}", "",
              "ONNX Runtime kernel time per run at batch 256 (ms, top 4):", ""]
    for key, ops in result["op_times_ms_batch_256"].items():
        lines.append(f"- {key}: " + ", ".join(f"{op} {ms:.2f}" for op, ms in list(ops.items())[:4]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--train-limit", type=int, help="train on only this many images (data.train_limit)")
    args = parser.parse_args()
    raw = common.params(args, quick)
    if args.train_limit:
        raw["data"]["train_limit"] = args.train_limit
    result = common.in_scratch("shrinkflow-deploy-", benchmark, raw)
    common.report(args, "deploy", "Deployment benchmark", table(result), result,
                  note=f"onnxruntime {common.version('onnxruntime')}, train_limit {raw['data']['train_limit']}.",
                  threads=raw["threads"], onnxruntime=common.version("onnxruntime"),
                  latency_warmup=raw["evaluate"]["latency_warmup"], latency_repeats=raw["evaluate"]["latency_repeats"],
                  params=raw)


if __name__ == "__main__":
    main()
