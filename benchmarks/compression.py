"""Compression benchmark: every technique side by side on the same data and teacher.

    .venv/bin/python benchmarks/compression.py            # full Fashion-MNIST, default params (~10 min, 2 cores)
    .venv/bin/python benchmarks/compression.py --quick    # tiny settings: checks that it runs

Runs the pipeline's own step functions (no Prefect, no registry) in a scratch
directory: one data split and one teacher, then each variant in its own
project copy. Writes a dated JSON + Markdown table to benchmarks/results/.
Latency is measured for every model in this same process, one after another,
so the ratios compare like with like.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import platform
import shutil
import sys
from pathlib import Path

import torch
import yaml

# This script's folder is on sys.path when it runs.
import common
from steps import config, data, distill, prune, teacher
from steps.evaluate import measure_models
from steps.names import ModelRole
from steps.pipeline import DATA_DIR, model_files


# name -> (params overrides, which model of that run to report)
VARIANTS: dict[str, tuple[dict, ModelRole]] = {
    "unstructured 90% (cubic, global)": (
        {"prune": {"method": "magnitude", "target_sparsity": 0.9, "schedule": "cubic", "rounds": 4}}, ModelRole.PRUNED),
    "structured 50% channels (L1)": (
        {"prune": {"method": "structured", "importance": "l1", "target_sparsity": 0.5, "schedule": "linear",
                   "rounds": 2, "scope": "layer"}}, ModelRole.PRUNED),
    "student alone (labels only)": ({"distill": {"teacher": "teacher", "alpha": 0.0}}, ModelRole.STUDENT),
    "student distilled from teacher": ({"distill": {"teacher": "teacher"}}, ModelRole.STUDENT),
    "structured to the student's size (75% channels)": (
        {"prune": {"method": "structured", "importance": "l1", "target_sparsity": 0.75, "schedule": "linear",
                   "rounds": 3, "scope": "layer"}}, ModelRole.PRUNED),
    "prune-then-distill (structured teacher)": (
        {"prune": {"method": "structured", "importance": "l1", "target_sparsity": 0.5, "schedule": "linear",
                   "rounds": 2, "scope": "layer"}, "distill": {"teacher": "pruned"}}, ModelRole.STUDENT),
}


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def quick(raw: dict) -> dict:
    """Tiny settings: a few hundred images, one epoch each."""
    return merge(raw, {
        "data": {"val_size": 200, "train_limit": 600, "test_limit": 300},
        "teacher": {"train": {"epochs": 1}}, "prune": {"finetune": {"epochs": 1}},
        "distill": {"train": {"epochs": 1}},
        "evaluate": {"latency_batch_size": 32, "latency_warmup": 1, "latency_repeats": 3},
    })


def train_base(work: Path, raw: dict) -> tuple[Path, config.Params]:
    """`work/base`: the data split and the teacher every variant starts from, with `raw` as its params."""
    base = work / "base"
    base.mkdir()
    params = config.validate(raw)
    (base / "params.yaml").write_text(yaml.safe_dump(raw))
    data.run(params, base)
    teacher.run(params, base)
    return base, params


def seed_project(root: Path, base: Path, raw: dict) -> config.Params:
    """A project dir holding the shared data split and teacher, plus this variant's params."""
    shutil.copytree(base / DATA_DIR, root / DATA_DIR)
    (root / "models").mkdir()
    for rel in model_files(ModelRole.TEACHER):
        shutil.copy2(base / rel, root / rel)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return config.validate(raw)


def run_variant(root: Path, params: config.Params, overrides: dict) -> None:
    if "prune" in overrides or overrides.get("distill", {}).get("teacher") == "pruned":
        prune.run(params, root)
    if "distill" in overrides:
        distill.run(params, root)


UNSTRUCTURED, STRUCTURED = "unstructured 90% (cubic, global)", "structured 50% channels (L1)"
ALONE, DISTILLED = "student alone (labels only)", "student distilled from teacher"


def goals(rows: list[dict]) -> list[str]:
    """Issue #8's quality goals, each with the numbers that meet it or not."""
    r = {row["name"]: row for row in rows}
    t = r["teacher"]
    loss = {name: (t["accuracy"] - row["accuracy"]) * 100 for name, row in r.items()}
    u, s, a, d = r[UNSTRUCTURED], r[STRUCTURED], r[ALONE], r[DISTILLED]
    checks = [
        ("teacher >= 92.5%", t["accuracy"] >= 0.925, f"{t['accuracy']:.2%}"),
        ("unstructured >= 90% sparsity, <= 0.3 pt loss", 1 - u["nonzeros"] / u["parameters"] >= 0.9
         and loss[UNSTRUCTURED] <= 0.3, f"{1 - u['nonzeros'] / u['parameters']:.1%} sparse, {loss[UNSTRUCTURED]:+.2f} pt loss"),
        ("structured >= 2x fewer MACs, <= 0.5 pt loss, speedup >= 0.8x MAC reduction",
         s["mac_reduction"] >= 2 and loss[STRUCTURED] <= 0.5 and s["speedup_per_mac_reduction"] >= 0.8,
         f"{s['mac_reduction']:.2f}x MACs, {loss[STRUCTURED]:+.2f} pt loss, ratio {s['speedup_per_mac_reduction']:.2f}"),
        ("distilled student <= 1/10 params, <= 1.5 pt below teacher, >= 0.5 pt above alone",
         d["parameters"] <= t["parameters"] / 10 and loss[DISTILLED] <= 1.5 and (d["accuracy"] - a["accuracy"]) >= 0.005,
         f"{d['parameters'] / t['parameters']:.1%} params, {loss[DISTILLED]:+.2f} pt loss, "
         f"{(d['accuracy'] - a['accuracy']) * 100:+.2f} pt vs alone"),
    ]
    return [f"- {name}: {'met' if ok else 'NOT met'} ({numbers})" for name, ok, numbers in checks]


def table(rows: list[dict]) -> str:
    head = ("| model | accuracy | params | non-zeros | MACs | size KB | zlib KB | p50 ms | speedup | "
            "MAC reduction | speedup / MAC reduction |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "\n".join(
        f"| {r['name']} | {r['accuracy']:.2%} | {r['parameters']:,} | {r['nonzeros']:,} | {r['macs'] / 1e6:.2f}M | "
        f"{r['file_bytes'] / 1024:,.0f} | {r['compressed_bytes'] / 1024:,.0f} | {r['latency_p50_ms']:.2f} | "
        f"{r['speedup']:.2f}x | {r['mac_reduction']:.2f}x | {r['speedup_per_mac_reduction']:.2f} |"
        for r in rows
    ) + "\n"


def main() -> None:
    args = common.parser(__doc__).parse_args()
    raw = common.params(args, quick)
    report(common.in_scratch("shrinkflow-bench-", benchmark, raw), raw, args.out, args.quick)


def benchmark(work: Path, raw: dict) -> list[dict]:
    base, params = train_base(work, raw)
    test = data.load_splits(base, ("test",))["test"]
    models = {"teacher": (base, ModelRole.TEACHER)}
    for i, (name, (overrides, role)) in enumerate(VARIANTS.items()):
        root = work / f"variant{i}"
        root.mkdir()
        variant_params = seed_project(root, base, merge(raw, overrides))
        run_variant(root, variant_params, overrides)
        models[name] = (root, role)
    measured = measure_models(models, test, params.evaluate, params.threads)  # teacher first: the reference
    return [{"name": name, **m, "speedup_per_mac_reduction": m["speedup"] / m["mac_reduction"]}
            for name, m in measured.items()]


def report(rows: list[dict], raw: dict, out: Path, quick_run: bool) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    meta = {"date": stamp, "quick": quick_run, "torch": torch.__version__, "threads": raw["threads"],
            "cpu": platform.processor() or platform.machine(), "latency_batch_size": raw["evaluate"]["latency_batch_size"],
            "params": raw, "command": " ".join(sys.argv[1:])}
    text = table(rows) + "\nGoals (issue #8, loss = teacher minus model, in points):\n\n" + "\n".join(goals(rows)) + "\n"
    print(text)
    if quick_run:
        return  # tiny settings prove that it runs; their numbers mean nothing
    out.mkdir(parents=True, exist_ok=True)
    (out / f"compression-{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    note = (f"# Compression benchmark {stamp}\n\n`python benchmarks/compression.py {meta['command']}` on {meta['cpu']}, "
            f"torch {meta['torch']}, {meta['threads']} threads, latency at batch {meta['latency_batch_size']}.\n\n")
    (out / f"compression-{stamp}.md").write_text(note + text)


if __name__ == "__main__":
    main()
