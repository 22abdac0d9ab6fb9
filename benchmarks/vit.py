"""ViT benchmark (issue 17): a ViT teacher, its head-, width- and depth-pruned versions and ViT students.

    .venv/bin/python benchmarks/vit.py                # full Fashion-MNIST, recipes/vit.yaml
    .venv/bin/python benchmarks/vit.py --seeds 1      # one student seed per distillation variant
    .venv/bin/python benchmarks/vit.py --quick        # tiny settings: checks that it runs

Everything runs through the pipeline's own stage functions (data, teacher,
prune, distill; no Prefect, no registry) in a scratch folder, in this one
process: the ViT teacher of benchmarks/recipes/vit.yaml; three pruned copies
(prune.method transformer: half the heads; width = a quarter of the heads,
half the MLP and a quarter of the embedding, round_to 16; half the blocks); ViT students distilled from
the ViT teacher with logits only and with logits + attention maps (MiniLM) +
hidden states (TinyBERT), each over --seeds seeds; one ViT student distilled
from the default CNN teacher (logits + pooled features). Every model is
exported to ONNX (parity-checked), quantized to int8 (dynamic and static) and
timed at batch 1 and 256, all eager models interleaved, then all ONNX files.

Named vit.py: a benchmarks/transformers.py would shadow the transformers package (this folder is on sys.path).

Goals: teacher >= 90%; a pruned ViT with >= 2x fewer MACs at <= 1.0 pt loss and
an ORT fp32 speedup >= 0.8x its MAC reduction; attention + hidden distillation
beats logits-only by >= 0.3 pt (mean over seeds); int8 vs fp32 latency reported.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

import yaml

# The shared helpers and the compression benchmark's: this script's folder is on sys.path when it runs.
import common
from common import merge
from base_project import seed_project, train_base
from compression import quick as compression_quick

from steps import config, distill, export, prune, teacher
from steps.compression import measure, onnx_export, quantization
from steps.compression.training import accuracy
from steps.core import datasets
from steps.core.layout import DATA_DIR
from steps.core.names import ModelRole
from steps.core.torchkit import load_model

RECIPE = Path(__file__).parent / "recipes" / "vit.yaml"
PRUNED = {  # name -> prune.transformer fractions
    "heads": {"heads": 0.5, "mlp": 0.0, "embedding": 0.0, "depth": 0.0},
    "width": {"heads": 0.25, "mlp": 0.5, "embedding": 0.25, "depth": 0.0},  # Minitron's width: heads, FFN, hidden
    "depth": {"heads": 0.0, "mlp": 0.0, "embedding": 0.0, "depth": 0.5},
}
LOGITS_ONLY = {"attention_maps": {"weight": 0.0}, "hidden_states": {"weight": 0.0}}
FORMATS = ("eager", "fp32", "dynamic", "static")
BATCHES = (1, 256)


def quick(raw: dict) -> dict:
    """Tiny settings: a few hundred images, one epoch each, few timing repeats."""
    return merge(compression_quick(raw), {"quantize": {"calibration_images": 64},
                                          "evaluate": {"latency_warmup": 1, "latency_repeats": 3}})


def _cnn_teacher(work: Path, base: Path, raw: dict) -> Path:
    """The default params' CNN teacher on the same data split (params.yaml's teacher section, not the recipe's)."""
    root = work / "cnn"
    root.mkdir()
    shutil.copytree(base / DATA_DIR, root / DATA_DIR)
    cnn_raw = merge(raw, {"teacher": yaml.safe_load((common.REPO / "params.yaml").read_text())["teacher"]})
    if raw["data"].get("train_limit"):  # --quick: the default epochs would be wasted on a few hundred images
        cnn_raw["teacher"]["train"]["epochs"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(cnn_raw))
    teacher.run(config.validate(cnn_raw), root)
    return root


def _variant(work: Path, name: str, source: Path, raw: dict, stage) -> tuple[Path, float]:
    root = work / name
    root.mkdir()
    params = seed_project(root, source, raw)
    start = time.perf_counter()
    stage.run(params, root)
    return root, time.perf_counter() - start


def train_models(work: Path, raw: dict, seeds: int) -> tuple[dict[str, tuple[Path, ModelRole]], dict[str, float]]:
    """{name: (root, role)} of every model and {name: training seconds}."""
    start = time.perf_counter()
    base, _ = train_base(work, raw)
    seconds = {"teacher": time.perf_counter() - start}
    models = {"teacher": (base, ModelRole.TEACHER)}
    for name, fractions in PRUNED.items():
        root, seconds[name] = _variant(work, name, base, merge(raw, {"prune": {"transformer": fractions}}), prune)
        models[name] = (root, ModelRole.PRUNED)
    for seed in range(seeds):
        for kind, overrides in (("logits", LOGITS_ONLY), ("attn+hidden", {})):
            name = f"student {kind} s{seed}"
            student_raw = merge(raw, {"seed": raw["seed"] + seed, "distill": {"teacher": "teacher", **overrides}})
            root, seconds[name] = _variant(work, name.replace(" ", "_"), base, student_raw, distill)
            models[name] = (root, ModelRole.STUDENT)
    cnn = _cnn_teacher(work, base, raw)
    models["cnn teacher"] = (cnn, ModelRole.TEACHER)
    from_cnn = merge(raw, {"distill": {"teacher": "teacher", "attention_maps": {"weight": 0.0}}})
    root, seconds["student from cnn"] = _variant(work, "from_cnn", cnn, from_cnn, distill)
    models["student from cnn"] = (root, ModelRole.STUDENT)
    return models, seconds


def build_files(work: Path, loaded: dict, test, calibration, params: config.Params) -> dict[str, dict[str, Path]]:
    """{model: {fp32|dynamic|static: ONNX file}}, exported (parity-checked) and quantized as the stages do."""
    files: dict[str, dict[str, Path]] = {}
    for i, (name, model) in enumerate(loaded.items()):
        fp32 = work / "onnx" / f"{i}.onnx"
        fp32.parent.mkdir(exist_ok=True)
        export.export_one(model, test.x, test.y, fp32, params.export, params.threads)
        files[name] = {"fp32": fp32}
        for method in quantization.METHODS:
            files[name][method] = work / "onnx" / f"{i}.{method}.onnx"
            quantization.quantize(fp32, files[name][method], method, calibration)
    return files


def benchmark(work: Path, raw: dict, seeds: int) -> dict:
    params = config.validate(raw)
    models, seconds = train_models(work, raw, seeds)
    test = datasets.load_splits(models["teacher"][0], ("test",))["test"]
    train_x = datasets.load_splits(models["teacher"][0], ("train",))["train"].x.numpy()
    calibration = quantization.calibration_slice(train_x, min(params.quantize.calibration_images, len(train_x)),
                                                 params.seed)
    timed = {n: m for n, m in models.items() if n != "cnn teacher" and not n.endswith(tuple(
        f" s{s}" for s in range(1, seeds)))}  # one seed of each student is timed; the rest count for accuracy
    loaded = {name: load_model(root, role)[0] for name, (root, role) in models.items()}
    files = build_files(work, {n: loaded[n] for n in timed}, test, calibration, params)
    rows = {name: {"macs": measure.macs(m, test.x[:1]), "parameters": measure.parameters(m),
                   "train_s": seconds.get(name), "accuracy": accuracy(m, test), "formats": {}}
            for name, m in loaded.items()}
    for name in timed:
        rows[name]["formats"]["eager"] = {"accuracy": rows[name]["accuracy"]}
        for fmt, path in files[name].items():
            logits = onnx_export.predict(onnx_export.session(path, params.threads), test.x.numpy())
            rows[name]["formats"][fmt] = {"accuracy": float((logits.argmax(1) == test.y.numpy()).mean()),
                                          "file_bytes": measure.file_size(path)}
    ev, flat = params.evaluate, {f"{n}/{fmt}": p for n, by_fmt in files.items() for fmt, p in by_fmt.items()}
    for size in BATCHES:
        batch = test.x[:size]
        eager = measure.latency_ms({n: loaded[n] for n in timed}, batch, ev.latency_warmup, ev.latency_repeats,
                                   params.threads)
        ort = measure.onnx_latency_ms(flat, batch.numpy(), ev.latency_warmup, ev.latency_repeats, params.threads)
        for name in timed:
            rows[name]["formats"]["eager"][f"batch_{size}"] = eager[name]
            for fmt in files[name]:
                rows[name]["formats"][fmt][f"batch_{size}"] = ort[f"{name}/{fmt}"]
    profile = {f"teacher/{fmt}": quantization.op_times_ms(files["teacher"][fmt], test.x[:256].numpy(),
                                                          params.threads, 5) for fmt in ("fp32", "dynamic", "static")}
    return {"rows": rows, "goals": goals(rows, seeds), "op_times_ms_batch_256": profile}


def goals(rows: dict, seeds: int) -> dict:
    t = rows["teacher"]
    pruned = {}
    for name in PRUNED:
        r = rows[name]
        reduction = t["macs"] / r["macs"]
        speedup = {b: t["formats"]["fp32"][f"batch_{b}"]["p50"] / r["formats"]["fp32"][f"batch_{b}"]["p50"]
                   for b in BATCHES}
        loss = (t["accuracy"] - r["accuracy"]) * 100
        pruned[name] = {"mac_reduction": reduction, "loss_pt": loss, "ort_speedup": speedup,
                        "met": reduction >= 2 and loss <= 1.0 and speedup[256] >= 0.8 * reduction}
    acc = {kind: [rows[f"student {kind} s{s}"]["accuracy"] for s in range(seeds)] for kind in ("logits", "attn+hidden")}
    gains = [(a - b) * 100 for a, b in zip(acc["attn+hidden"], acc["logits"], strict=True)]
    gain = statistics.mean(gains)
    return {"teacher_accuracy": t["accuracy"], "teacher_met": t["accuracy"] >= 0.90, "teacher_train_s": t["train_s"],
            "pruned": pruned, "pruned_met": any(p["met"] for p in pruned.values()),
            "student_accuracy": acc, "distill_gain_pt": gain, "distill_gains_pt": gains, "seeds": seeds,
            "distill_met": gain >= 0.3}


def _fmt_row(name: str, row: dict, fmt: str) -> str:
    f = row["formats"][fmt]
    size = f"{f['file_bytes'] / 1024:,.0f}" if "file_bytes" in f else ""
    label = "eager" if fmt == "eager" else f"ORT {fmt}"
    return (f"| {name} | {label} | {row['parameters']:,} | {row['macs'] / 1e6:.2f} | {f['accuracy']:.2%} | {size} | "
            f"{f['batch_1']['p50']:.3f} | {f['batch_256']['p50']:.2f} | {f['batch_256']['p95']:.2f} |")


def table(result: dict) -> str:
    lines = ["| model | format | params | MMACs | accuracy | ONNX KB | b1 p50 ms | b256 p50 ms | b256 p95 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [_fmt_row(n, r, fmt) for n, r in result["rows"].items() if r["formats"] for fmt in FORMATS]
    g = result["goals"]
    ok = lambda met: "met" if met else "NOT met"  # noqa: E731
    lines += ["", f"- ViT teacher {g['teacher_accuracy']:.2%} after {g['teacher_train_s'] / 60:.1f} min of training "
                  f"(goal >= 90%: {ok(g['teacher_met'])})"]
    for name, p in g["pruned"].items():
        lines.append(f"- {name}-pruned: {p['mac_reduction']:.2f}x fewer MACs, {p['loss_pt']:+.2f} pt loss, ORT fp32 "
                     f"speedup {p['ort_speedup'][1]:.2f}x (b1) / {p['ort_speedup'][256]:.2f}x (b256) = "
                     f"{p['ort_speedup'][256] / p['mac_reduction']:.2f} of the MAC reduction")
    lines.append(f"- pruned goal (>= 2x fewer MACs, <= 1.0 pt loss, b256 speedup >= 0.8x the MAC reduction): "
                 f"{ok(g['pruned_met'])}")
    per_seed = ", ".join(f"{x:+.2f}" for x in g["distill_gains_pt"])
    lines.append(f"- attention + hidden vs logits-only distillation: {g['distill_gain_pt']:+.2f} pt, mean of "
                 f"{g['seeds']} seed(s) (per seed {per_seed}; goal >= 0.3 pt: {ok(g['distill_met'])})")
    lines += ["", "ONNX Runtime kernel time per run at batch 256, teacher (ms, top 4):", ""]
    for key, ops in result["op_times_ms_batch_256"].items():
        lines.append(f"- {key}: " + ", ".join(f"{op} {ms:.2f}" for op, ms in list(ops.items())[:4]))
    accuracy_only = [n for n, r in result["rows"].items() if not r["formats"]]
    if accuracy_only:
        lines += ["", "Accuracy only (not timed): " + ", ".join(
            f"{n} {result['rows'][n]['accuracy']:.2%}" for n in accuracy_only)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--seeds", type=int, default=3, help="student seeds per distillation variant")
    args = parser.parse_args()
    raw = common.params(args, quick, yaml.safe_load(RECIPE.read_text()))
    seeds = 1 if args.quick else args.seeds
    start = time.perf_counter()
    result = common.in_scratch("shrinkflow-vit-", lambda work, r: benchmark(work, r, seeds), raw)
    result["wall_s"] = time.perf_counter() - start
    common.report(args, "transformers", "Transformer benchmark", table(result), result,
                  note=f"onnxruntime {common.version('onnxruntime')}, {result['wall_s'] / 60:.1f} min wall.",
                  threads=raw["threads"], onnxruntime=common.version("onnxruntime"), wall_s=result["wall_s"],
                  params=raw)


if __name__ == "__main__":
    main()
