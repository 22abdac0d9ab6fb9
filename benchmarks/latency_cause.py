"""Why p95 moves between timing windows (issue 29): intra-op threads against the cores, and other work on the machine.

    make run && .venv/bin/python benchmarks/latency_cause.py

Times the project's student and teacher ONNX files (raw test pixels, `--batch-size` 256) interleaved, as evaluate
does, in `--windows` windows per condition, the conditions in turns:

- threads 1 or `params.threads` (2 on the 2-core machines here: every core);
- `quiet`, or with a background process that busy-loops `--busy-ms` every 20 ms (10% of one core by default):
  what a server's or a monitor's wake-ups, another test, a log shipper do on a shared machine.

Per condition: the student's p95 in each window and its max/min, the teacher's, the ratio of medians (the
speedup a relative budget reads), and the CPU time the kernel counted as stolen by the hypervisor (steal) and
idle during the windows. Writes a dated JSON + Markdown file to benchmarks/results/ (with lscpu's model).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

import common

from steps import config
from steps.core import latency
from steps.core.layout import onnx_path
from steps.core.names import ModelRole

from latency_stability import timed_batch

BACKGROUND = "import time\nwhile True:\n    t = time.perf_counter()\n    while time.perf_counter() - t < {busy}: pass\n" \
             "    time.sleep({rest})\n"


def cpu_times() -> np.ndarray:
    """The machine's CPU time counters (/proc/stat's first line: user nice system idle iowait irq softirq steal)."""
    return np.array([int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]])


def window(files: dict[str, Path], batch: np.ndarray, threads: int, seconds: float) -> dict:
    before = cpu_times()
    timed = latency.time_files(files, batch, latency.Timing(len(batch), threads, 5, 72, seconds))
    spent = cpu_times() - before
    student, teacher = (np.asarray(timed[n][0]) for n in ("student", "teacher"))
    return {"student_p95": float(np.quantile(student, 0.95)), "teacher_p95": float(np.quantile(teacher, 0.95)),
            "speedup": float(np.median(teacher) / np.median(student)),
            "steal_pct": 100 * spent[7] / spent.sum(), "idle_pct": 100 * spent[3] / spent.sum()}


def run(files: dict[str, Path], batch: np.ndarray, threads: list[int], windows: int, seconds: float,
        busy_ms: float) -> dict[str, list[dict]]:
    conditions = [(t, load) for load in ("quiet", "background") for t in threads]
    out: dict[str, list[dict]] = {f"threads {t}, {load}": [] for t, load in conditions}
    for _ in range(windows):
        for t, load in conditions:
            background = None
            if load == "background":
                code = BACKGROUND.format(busy=busy_ms / 1e3, rest=(20 - busy_ms) / 1e3)
                background = subprocess.Popen([sys.executable, "-c", code])
            try:
                out[f"threads {t}, {load}"].append(window(files, batch, t, seconds))
            finally:
                if background is not None:
                    background.kill()
                    background.wait()
    return out


def table(result: dict) -> str:
    lines = ["| condition | student p95 ms per window | max/min | teacher p95 max/min | speedup per window | "
             "max/min | steal % | idle % |", "|---|---|---|---|---|---|---|---|"]
    for condition, rows in result["conditions"].items():
        student = [r["student_p95"] for r in rows]
        teacher = [r["teacher_p95"] for r in rows]
        ratio = [r["speedup"] for r in rows]
        lines.append(f"| {condition} | {' '.join(f'{v:.2f}' for v in student)} | {max(student) / min(student):.2f} | "
                     f"{max(teacher) / min(teacher):.2f} | {' '.join(f'{v:.2f}' for v in ratio)} | "
                     f"{max(ratio) / min(ratio):.2f} | {np.mean([r['steal_pct'] for r in rows]):.1f} | "
                     f"{np.mean([r['idle_pct'] for r in rows]):.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--root", type=Path, default=common.REPO, help="a project after its run (its models/*.onnx)")
    p.add_argument("--windows", type=int, default=6)
    p.add_argument("--seconds", type=float, default=1.5, help="each window's length")
    p.add_argument("--busy-ms", type=float, default=2.0, help="the background's busy time in every 20 ms")
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args()
    root = args.root.resolve()
    params = config.validate(yaml.safe_load((root / "params.yaml").read_text()))
    files = {"student": root / onnx_path(ModelRole.STUDENT), "teacher": root / onnx_path(ModelRole.TEACHER)}
    threads = sorted({1, params.threads})
    windows, seconds = (1, 0.2) if args.quick else (args.windows, args.seconds)
    result = {"conditions": run(files, timed_batch(root, args.batch_size), threads, windows, seconds, args.busy_ms),
              "batch_size": args.batch_size, "busy_ms_per_20ms": args.busy_ms}
    common.report(args, "latency-cause", "Latency: threads, cores and other work", table(result), result,
                  threads=params.threads)


if __name__ == "__main__":
    main()
