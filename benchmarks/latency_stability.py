"""Latency stability (issue 29): do latency verdicts hold from one run to the next, before and after the change?

    make run && .venv/bin/python benchmarks/latency_stability.py                    # the project's models
    .venv/bin/python benchmarks/latency_stability.py --model choice=PATH.onnx --runs 10 --gap 170   # 30 minutes

Each run times every model (the project's student, and any `--model NAME=FILE`, e.g. a budget search's
choice) the way a budget is judged, at `--batch-size` (256: the issue's case):

- `before`: the procedure up to issue 29: the file alone, one window of target.search.verify_repeats calls
  and verify_seconds, p95 with its order-statistic 95% interval; a latency limit passes when the upper end is
  within it, else fails;
- `after`: steps/core/latency.py as the search's verification and evaluate now time it: the file beside the
  teacher's file in the same turns, target.search.verify_windows windows; p95's interval across the windows,
  and the speedup (teacher median / model median) with its interval; pass, over or inconclusive.

Runs are `--gap` seconds apart. At the end each model's budgets are set at 0.8x, 1.0x and 1.2x of its
median p95 over the runs (for `speedup`: 1.2x, 1.0x and 0.8x of its median speedup, so 0.8x is "20% outside"
again), and the table counts each verdict over the runs: a budget 20% inside or outside should get one
verdict every time. Writes a dated JSON + Markdown file to benchmarks/results/ (with lscpu's model).
"""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import numpy as np
import yaml

import common

from steps import config
from steps.core import budget, datasets, latency
from steps.core.layout import onnx_path
from steps.core.names import ModelRole
from steps.core.stats.windows import expanded

FACTORS = (0.8, 1.0, 1.2)


def timed_batch(root: Path, batch_size: int) -> np.ndarray:
    pixels = datasets.raw_split(root, "test")[0].astype(np.float32)
    return np.ascontiguousarray(np.resize(pixels, (batch_size, *pixels.shape[1:])))


def one_run(models: dict[str, Path], teacher: Path, batch: np.ndarray, params: config.Params) -> dict:
    """{model: {"before": reading, "after": reading}} of one run."""
    after_timing = budget.verify_timing(params, len(batch))
    before_timing = latency.Timing(len(batch), params.threads, after_timing.warmup, after_timing.repeats,
                                   after_timing.seconds, windows=1)
    out = {}
    for name, path in models.items():
        before = latency.reading(latency.time_files({name: path}, batch, before_timing), name)
        timed = latency.time_files({name: path, latency.REFERENCE: teacher}, batch, after_timing)
        after = latency.reading(timed, name, latency.REFERENCE)  # the teacher beside itself: the ratio's noise
        out[name] = {"before": before, "after": after}
    return out


def verdict_counts(runs: list[dict], model: str, procedure: str, key: str, factor: float) -> dict[str, int]:
    """How often each verdict came out over the runs, for a limit at `factor` x the model's median (latency:
    p95; speedup: the limit is the median speedup / factor, so a factor above 1 is always the looser limit)."""
    readings = [r[model][procedure] for r in runs]
    spec = budget.MEASURED[key]
    median = float(np.median([r[spec.estimate] for r in readings]))
    limit = median * factor if key == budget.LATENCY else median / factor
    found = collections.Counter()
    for r in readings:
        if procedure == "before":  # the old rule: the upper end of the interval within the limit, else refused
            found[latency.PASS if r[spec.high] <= limit else latency.OVER] += 1
        else:
            found[latency.verdict(r[spec.low], r[spec.high], limit, spec.at_least)] += 1
    return dict(found)


def flips(counts: dict[str, int]) -> int:
    """Runs whose verdict differs from the most common one."""
    return sum(counts.values()) - max(counts.values())


def spread(values: list[float]) -> float:
    return max(values) / min(values)


def table(result: dict) -> str:
    runs = result["runs"]
    lines = ["| model | procedure | p95 ms per run (median) | p95 max/min | limit | verdicts at 0.8x / 1.0x / 1.2x "
             "(flips) |", "|---|---|---|---|---|---|"]
    for model in runs[0]:
        for procedure in ("before", "after"):
            p95s = [r[model][procedure]["latency_p95_ms"] for r in runs]
            keys = [budget.LATENCY] + ([budget.SPEEDUP] if "speedup" in runs[0][model][procedure] else [])
            for key in keys:
                cells = []
                for factor in FACTORS:
                    counts = verdict_counts(runs, model, procedure, key, factor)
                    cells.append(", ".join(f"{n} {v}" for v, n in sorted(counts.items())) + f" ({flips(counts)})")
                values = [r[model][procedure][key] for r in runs]
                shown = " ".join(f"{v:.2f}" for v in p95s) if key == budget.LATENCY else \
                    "speedup " + " ".join(f"{v:.2f}" for v in values)
                lines.append(f"| {model} | {procedure} | {shown} ({np.median(values):.2f}) | {spread(values):.2f} | "
                             f"{'p95' if key == budget.LATENCY else 'speedup'} | {' / '.join(cells)} |")
    return "\n".join(lines)


def widened(result: dict) -> dict:
    """`result` (a results JSON made before steps/core/stats/windows.py widened its interval for few windows) with
    each `after` reading's p95 and speedup intervals widened as the code now widens them (the widening is a
    function of the estimate, the ends and the number of windows only, so no timing is redone)."""
    out = json.loads(json.dumps(result))
    for run in out["runs"]:
        for model in run.values():
            r = model["after"]
            for key in (budget.LATENCY, budget.SPEEDUP):
                spec = budget.MEASURED[key]
                if r.get(spec.low) is not None and r["windows"] > 1:
                    r[spec.low], r[spec.high] = expanded(r[spec.estimate], r[spec.low], r[spec.high], r["windows"])
    return out


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--root", type=Path, default=common.REPO, help="a project after its run (its models/*.onnx)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=FILE", help="another ONNX file to time")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--gap", type=float, default=170.0, help="seconds between runs (10 runs over about 30 minutes)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--widen", type=Path, metavar="RESULT.json",
                   help="no timing: the verdict table of a result made before the few-windows widening, widened")
    args = p.parse_args()
    if args.widen:
        result = widened(json.loads(args.widen.read_text()))
        note = (f"Recomputed from {args.widen.name} (its timings; its `after` intervals widened for few windows as "
                "steps/core/stats/windows.py now does). Verdict counts over the runs; flips: runs whose verdict "
                "differs from the most common one.")
        common.report(args, "latency-stability", "Latency stability (widened intervals)", table(result), result,
                      note=note, source=args.widen.name)
        return
    root = args.root.resolve()
    params = config.validate(yaml.safe_load((root / "params.yaml").read_text()))
    teacher = root / onnx_path(ModelRole.TEACHER)
    models = {"student": root / onnx_path(ModelRole.STUDENT), "teacher": teacher}
    models |= {name: Path(file) for name, _, file in (m.partition("=") for m in args.model)}
    runs, gap = (2, 0.0) if args.quick else (args.runs, args.gap)
    batch, results = timed_batch(root, args.batch_size), []
    for r in range(runs):
        began = time.monotonic()
        results.append(one_run(models, teacher, batch, params))
        print(f"run {r + 1}/{runs}: " + ", ".join(f"{m} p95 {v['after']['latency_p95_ms']:.2f} ms"
                                                 for m, v in results[-1].items()), flush=True)
        if r < runs - 1:
            time.sleep(max(0.0, gap - (time.monotonic() - began)))
    result = {"runs": results, "batch_size": args.batch_size, "gap_s": gap, "models": {k: str(v) for k, v in models.items()}}
    note = ("Verdict counts over the runs; flips: runs whose verdict differs from the most common one. The teacher's "
            "speedup row is the teacher timed beside itself: the ratio's own noise.")
    common.report(args, "latency-stability", "Latency stability", table(result), result, note=note,
                  threads=params.threads)


if __name__ == "__main__":
    main()
