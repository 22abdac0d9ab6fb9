"""Latency stability (issue 29): does a deployable's p95 hold from one timing window to the next, and what moves it?

    make run && .venv/bin/python benchmarks/latency_stability.py            # the project's student and teacher
    .venv/bin/python benchmarks/latency_stability.py --windows 8 --gap 30  # more, further apart

Times the project's student and teacher ONNX files (the files evaluate times, on raw test pixels) at
`--batch-size` (256: the issue's case), in `--windows` windows spaced `--gap` seconds apart, under each
condition, the windows of all conditions in turns so that slow drift of the machine reaches every
condition alike:

- `fresh`: ONNX Runtime alone in this process, the pipeline's session (2 threads, spinning off), the two
  files interleaved call by call (steps/compression/measure.py), as evaluate times them;
- `after training`: the same, right after 40 steps of PyTorch training in this process (its OpenMP pool
  just busy), as evaluate runs in the flow's process after the training stages;
- `spinning on`: ONNX Runtime's default intra-op spinning;
- `one at a time`: each file in its own block (all the student's calls, then all the teacher's), not
  interleaved.

Each window gives each file's p95 with its 95% interval and the teacher/student ratio of p50s. The table
says, per condition, how far the student's p95 moves between windows (max/min) and how far the ratio does:
an absolute budget judged in one window inherits the first spread, a budget relative to the teacher timed
side by side the second. Writes a dated JSON + Markdown file to benchmarks/results/ (with lscpu's model).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

import common

from steps.compression import measure, onnx_export
from steps.core import datasets
from steps.core.layout import onnx_path
from steps.core.measurement import with_p95_interval
from steps.core.names import ModelRole
from steps.core.torchkit import load_model

CONDITIONS = ("fresh", "after training", "spinning on", "one at a time")
THREADS, WARMUP, REPEATS = 2, 5, 120  # params.threads and evaluate's latency_warmup / latency_repeats


def sessions(root: Path, spinning: bool) -> dict:
    out = {}
    for role in (ModelRole.STUDENT, ModelRole.TEACHER):
        sess = onnx_export.session(root / onnx_path(role), THREADS)
        if spinning:  # a session as ONNX Runtime makes it by default: idle workers spin
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
            sess = ort.InferenceSession(str(root / onnx_path(role)), options, providers=["CPUExecutionProvider"])
        out[role.value] = sess
    return out


def train_a_little(root: Path, steps: int = 40) -> None:
    """What the flow's process did just before evaluate: PyTorch training (the student, on random batches)."""
    torch.set_num_threads(THREADS)
    model = load_model(root, ModelRole.STUDENT)[0].train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    shape = tuple(datasets.input_shape(datasets.read_manifest(root)))
    for _ in range(steps):
        x = torch.randn((128, *shape), generator=generator)
        loss = model(x).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def window(root: Path, condition: str, batch: np.ndarray) -> dict:
    """One timing window: {file: {p50, p95, p95_low, p95_high, ...}} and the teacher/student p50 ratio."""
    if condition == "after training":
        train_a_little(root)
    timed_sessions = sessions(root, spinning=condition == "spinning on")
    feed = {"x": batch}
    runners = {name: (lambda s=s: s.run(None, feed)) for name, s in timed_sessions.items()}
    if condition == "one at a time":
        timed = {name: measure.interleaved_ms({name: run}, WARMUP, REPEATS, keep_samples=True)[name]
                 for name, run in runners.items()}
    else:
        timed = measure.interleaved_ms(runners, WARMUP, REPEATS, keep_samples=True)
    result = {name: with_p95_interval(t) for name, t in timed.items()}
    return {**result, "ratio": result["teacher"]["p50"] / result["student"]["p50"]}


def benchmark(root: Path, windows: int, gap: float, batch_size: int) -> dict:
    pixels = datasets.raw_split(root, "test")[0].astype(np.float32)
    batch = np.ascontiguousarray(np.resize(pixels, (batch_size, *pixels.shape[1:])))
    runs: dict[str, list[dict]] = {c: [] for c in CONDITIONS}
    for w in range(windows):
        for condition in CONDITIONS:
            runs[condition].append({"at_s": time.monotonic(), **window(root, condition, batch)})
        if w < windows - 1:
            time.sleep(gap)  # the windows are meant to be apart in time: evaluate and the search time minutes apart
    return {"windows": windows, "gap_s": gap, "batch_size": batch_size, "runs": runs}


def spread(values: list[float]) -> float:
    return max(values) / min(values)


def table(result: dict) -> str:
    lines = ["| condition | student p95 ms per window | student p95 max/min | upper ends max/min | "
             "teacher p95 max/min | teacher/student p50 ratio per window | ratio max/min |",
             "|---|---|---|---|---|---|---|"]
    for condition, runs in result["runs"].items():
        student = [r["student"]["p95"] for r in runs]
        highs = [r["student"]["p95_high"] for r in runs]
        teacher = [r["teacher"]["p95"] for r in runs]
        ratios = [r["ratio"] for r in runs]
        lines.append(f"| {condition} | {' '.join(f'{v:.2f}' for v in student)} | {spread(student):.2f} | "
                     f"{spread(highs):.2f} | {spread(teacher):.2f} | {' '.join(f'{v:.2f}' for v in ratios)} | "
                     f"{spread(ratios):.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--root", type=Path, default=common.REPO, help="a project after its run (its models/*.onnx)")
    p.add_argument("--windows", type=int, default=6)
    p.add_argument("--gap", type=float, default=15.0, help="seconds between windows")
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args()
    windows, gap = (2, 0.0) if args.quick else (args.windows, args.gap)
    result = benchmark(args.root.resolve(), windows, gap, args.batch_size)
    common.report(args, "latency-stability", "Latency stability", table(result), result, threads=THREADS)


if __name__ == "__main__":
    main()
