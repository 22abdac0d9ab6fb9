"""Pipeline-cost benchmark: what Prefect, MLflow and DVC add to the same steps, caching, cold start.

    .venv/bin/python benchmarks/overhead.py            # default params, full Fashion-MNIST (about 10 min, 2 idle cores)
    .venv/bin/python benchmarks/overhead.py --quick    # tiny settings: checks that it runs (numbers are not saved)

Each measurement is a fresh process in a fresh project copy (git + DVC, as a user's checkout), run one
after another in this same invocation, so the ratios compare like with like:

1. plain: the pipeline's step functions called in order from a Python script (no Prefect, no DVC). Their own
   MLflow calls are timed, so "plain compute" is the script without MLflow.
2. flow, clean checkout: `shrinkflow run` (the real CLI code) with a fresh Prefect home: total, breakdown
   (imports, Prefect server start, Prefect orchestration incl. cache keys, MLflow, DVC commit, DVC push),
   and the cold start: process start until the first step starts. As in the CLI, Prefect's temporary
   server starts before the imports; "Prefect server start" is what is left of its start-up after them.
3. flow again, nothing changed: every stage should be Cached; ratio to the first run. The flow itself runs
   (Prefect server started, flow run recorded) and finds nothing stale, as a scheduled run does; the
   command as a user types it answers before starting anything (5.).
4. flow with one param changed (distill.temperature): which stages ran.
5. the no-change answer as a user gets it: `shrinkflow run` as a plain command in a checkout that already
   ran (no pre-imports, no server started for it), repeated; then the same with a Prefect server already
   running (PREFECT_API_URL set: the flow runs, finds nothing stale and records its flow run).

The timings come from wrappers around the pipeline's own doors (steps.tracking, steps.storage, each
step's run(), the flow's cache-key function) installed in the measured process (benchmarks/overhead_probe.py);
nothing is replaced. Writes a dated JSON + Markdown table to benchmarks/results/ (common.report).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# This script's folder is on sys.path when it runs.
import common
from checkout import copy_project

from flows import prefect_server

CHANGED_PARAM = "distill.temperature"
NO_CHANGE_REPEATS = 5


PROBE = Path(__file__).with_name("overhead_probe.py")


def quick(raw: dict) -> dict:
    """Tiny settings: a few hundred images, tiny models, one epoch each. The fixed costs (process starts, imports,
    Prefect, MLflow, DVC) are what a quick run goes through; its compute is kept out of the way."""
    raw = json.loads(json.dumps(raw))
    raw["data"].update(val_size=100, train_limit=300, test_limit=200)
    for arch, channels, hidden in ((raw["teacher"]["arch"], [8, 16], [32]), (raw["distill"]["student"], [4, 8], [16])):
        if arch["name"] == "cnn":  # the default models; a recipe's other architecture keeps its size
            arch.update(channels=channels, hidden=hidden)
    for section in (raw["teacher"]["train"], raw["prune"]["finetune"], raw["distill"]["train"]):
        section["epochs"] = 1
    raw["prune"]["rounds"] = 2
    raw["quantize"]["calibration_images"] = 64
    raw["evaluate"].update(latency_batch_size=16, latency_warmup=1, latency_repeats=3)
    raw["promote"].update(min_accuracy=0.0, max_accuracy_drop=1.0)
    return raw


def checkout_env(root: Path, **extra: str) -> dict[str, str]:
    """A process in the copy `root` as a user's checkout: its own code, no servers or Prefect home of ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME")}
    return {**env, "PYTHONPATH": str(root), "PATH": f"{Path(sys.executable).parent}:{env['PATH']}", **extra}


def measure(mode: str, root: Path, *args: str) -> dict:
    """One fresh process; wall time from its start to its exit, plus what it measured inside."""
    env = checkout_env(root)
    started = time.time()
    proc = subprocess.run([sys.executable, str(PROBE), mode, str(root), repr(started), "--", *args],
                          capture_output=True, text=True, env=env, cwd=root, timeout=3600)
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return {"wall_s": wall, **json.loads(proc.stdout.strip().splitlines()[-1])}


def command_wall_s(root: Path, repeats: int, extra_env: dict[str, str] | None = None) -> list[float]:
    """Wall seconds of `shrinkflow run` as a user types it, `repeats` times; each must succeed and say so."""
    env = checkout_env(root, **(extra_env or {}))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        proc = subprocess.run([str(Path(sys.executable).parent / "shrinkflow"), "run", "--root", str(root)],
                              capture_output=True, text=True, env=env, cwd=root, timeout=600)
        times.append(time.perf_counter() - started)
        if proc.returncode != 0 or "=Cached" not in proc.stdout or "=Completed" in proc.stdout:
            raise SystemExit(f"no-change run did not find everything cached:\n{proc.stdout[-2000:]}"
                             f"{proc.stderr[-2000:]}")
    return times


def spread(times: list[float]) -> dict[str, float]:
    mean = sum(times) / len(times)
    return {"mean_s": mean, "min_s": min(times), "max_s": max(times), "runs": len(times)}


def breakdown(run: dict) -> dict[str, float]:
    """Where a flow run's wall time went; 'prefect orchestration' is what is left after everything else."""
    s = run["seconds"]
    stages = sum(v for k, v in s.items() if k.startswith("stage."))
    parts = {
        "process start + imports": run["wall_s"] - run["total_in_process"] + s.get("imports", 0.0),
        "Prefect server start": s.get("prefect_server_start", 0.0),
        "steps (compute)": stages - s.get("mlflow", 0.0),
        "MLflow logging and registry": s.get("mlflow", 0.0),
        "DVC commit (hashing, dvc.lock)": s.get("dvc_commit", 0.0),
        "DVC push": s.get("dvc_push", 0.0),
        "cache keys and output hashes": s.get("cache_keys", 0.0),
    }
    parts["Prefect orchestration (tasks, states, results)"] = run["wall_s"] - sum(parts.values())
    return parts


@contextlib.contextmanager
def running_prefect(work: Path, api: str | None):
    """`api` when given (a Prefect server already running), else one started for the measurement."""
    if api:
        yield api
        return
    server = prefect_server.full(work / "prefect-server")  # the services profile's Prefect, as compose runs it
    try:
        server.wait_until_ready()
        yield server.url
    finally:
        server.stop()


def benchmark(work: Path, raw: dict, repeats: int = NO_CHANGE_REPEATS, warm_up: bool = True,
              prefect_api: str | None = None) -> dict:
    """Every measurement, in order. `warm_up`: let the Prefect server's first flow run (which registers the flow)
    go unmeasured; --quick skips it, its numbers are not kept. `prefect_api`: measure 5.'s second part against
    that server instead of starting one."""
    plain_root = copy_project(work / "plain", raw)
    flow_root = copy_project(work / "flow", raw)
    plain = measure("plain", plain_root)
    first = measure("cli", flow_root)
    rerun = measure("cli", flow_root)
    new_value = raw["distill"]["temperature"] + 1
    changed = measure("cli", flow_root, "-S", f"{CHANGED_PARAM}={new_value}")
    no_change = spread(command_wall_s(flow_root, repeats))
    with running_prefect(work, prefect_api) as api:
        if warm_up:
            command_wall_s(flow_root, 1, {"PREFECT_API_URL": api})  # the server's first flow run registers the flow
        no_change_server = spread(command_wall_s(flow_root, repeats, {"PREFECT_API_URL": api}))
    plain_mlflow = plain["seconds"].get("mlflow", 0.0)
    plain_compute = plain["wall_s"] - plain_mlflow
    plain_startup = plain["wall_s"] - plain["total_in_process"] + plain["seconds"].get("imports", 0.0)
    parts = breakdown(first)
    flow_fixed = first["wall_s"] - parts["steps (compute)"]  # everything that is not a step's own work
    plain_fixed = plain_startup + plain_mlflow
    return {
        "flow_fixed_s": flow_fixed, "plain_fixed_s": plain_fixed,
        "overhead_from_parts": (flow_fixed - plain_fixed) / plain["wall_s"],
        "plain": plain, "first": first, "rerun": rerun, "changed": changed, "changed_param": CHANGED_PARAM,
        "plain_compute_s": plain_compute,
        "overhead_vs_plain_compute": first["wall_s"] / plain_compute - 1,
        "overhead_vs_plain_with_mlflow": first["wall_s"] / plain["wall_s"] - 1,
        "rerun_ratio": rerun["wall_s"] / first["wall_s"],
        "no_change_command": no_change, "no_change_with_prefect_server": no_change_server,
        "cold_start_s": first["first_step_after_s"],
        "breakdown": parts,
        "plain_breakdown": {"process start + imports": plain_startup,
                            "steps (compute)": plain_compute - plain_startup,
                            "MLflow logging and registry": plain_mlflow},
    }


def markdown(r: dict) -> str:
    lines = ["| measurement | wall s | vs first flow run |", "|---|---|---|"]
    first = r["first"]["wall_s"]
    lines.append(f"| plain script, steps without MLflow | {r['plain_compute_s']:.1f} | "
                 f"{r['plain_compute_s'] / first:.2f} |")
    lines.append(f"| plain script, steps with their MLflow logging | {r['plain']['wall_s']:.1f} | "
                 f"{r['plain']['wall_s'] / first:.2f} |")
    lines.append(f"| `shrinkflow run`, clean checkout | {first:.1f} | 1.00 |")
    lines.append(f"| `shrinkflow run`, nothing changed | {r['rerun']['wall_s']:.1f} | {r['rerun_ratio']:.2f} |")
    lines.append(f"| `shrinkflow run -S {r['changed_param']}=...` | {r['changed']['wall_s']:.1f} | "
                 f"{r['changed']['wall_s'] / first:.2f} |")
    for label, key in (("`shrinkflow run` as typed, nothing changed (local profile)", "no_change_command"),
                       ("the same with a Prefect server running (PREFECT_API_URL)", "no_change_with_prefect_server")):
        t = r[key]
        lines.append(f"| {label}: mean of {t['runs']} (min-max) | {t['mean_s']:.2f} ({t['min_s']:.2f}-"
                     f"{t['max_s']:.2f}) | {t['mean_s'] / first:.3f} |")
    lines += ["", f"Overhead of the flow over the plain script: {r['overhead_vs_plain_compute']:+.1%} "
              f"(over the plain script with MLflow: {r['overhead_vs_plain_with_mlflow']:+.1%}); the same steps' "
              "compute differs by a few percent between two runs, so also from the parts: the flow spends "
              f"{r['flow_fixed_s']:.1f} s outside the steps, the plain script {r['plain_fixed_s']:.1f} s (process "
              f"start, imports, MLflow): {r['overhead_from_parts']:+.1%} of the plain script.",
              f"Cold start (clean checkout, process start until the first step starts): {r['cold_start_s']:.1f} s.",
              "", "| where the first flow run's time went | s | share |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {v / first:.1%} |" for k, v in r["breakdown"].items()]
    states = lambda run: ", ".join(f"{k}={v}" for k, v in run["states"].items())  # noqa: E731
    lines += ["", f"Rerun, nothing changed: {states(r['rerun'])}.",
              f"Rerun after changing {r['changed_param']}: {states(r['changed'])}."]
    ran = [k for k, v in r["changed"]["states"].items() if v != "Cached"]
    lines.append(f"Stages that ran after the change: {', '.join(ran) or 'none'}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--prefect-api", help="a running Prefect server's API URL for the no-change run with a "
                        "server (default: start one with `prefect server start`)")
    args = parser.parse_args()
    raw = common.params(args, quick)
    measured = functools.partial(benchmark, prefect_api=args.prefect_api)
    if args.quick:
        measured = functools.partial(measured, repeats=1, warm_up=False)
    result = common.in_scratch("shrinkflow-overhead-", measured, raw)
    common.report(args, "overhead", "Pipeline-cost benchmark", markdown(result), result, threads=raw["threads"],
                  params=raw)


if __name__ == "__main__":
    main()
