"""A training stage on several processes: it starts itself under torchrun and waits (`resources.processes` > 1).

`run()` of teacher, prune or distill, called alone (`python -m steps.<stage>`, as DVC runs it) or by the flow, finds
more than one process asked for and no torchrun around it, and re-executes the stage as

    python -m torch.distributed.run --standalone --nnodes 1 --nproc-per-node N -m steps.<stage> --root R
        --launch-spec FILE

with this interpreter (the venv's) and this checkout's code first on PYTHONPATH. FILE holds the params snapshot
and the origin the caller passed, so every rank runs what the caller would have run (-S overrides included).
The ranks train (steps/compression/parallel.py); rank 0 alone writes the checkpoint, metrics/<stage>.json and
the MLflow run, and this process reads that result back. A rank that fails makes torchrun stop the others;
this raises RankFailed naming the rank, its exit code and the last line it wrote on stderr, and the MLflow run
rank 0 had opened (torchrun stops the surviving ranks by signal, so rank 0 cannot end that run itself: the caller,
stagekit.ranks.launched, marks it failed). On several machines a cluster scheduler starts torchrun --nnodes on
each itself; the stage then runs as the rank it was made. Torch-free: torchrun is a child process.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from steps import config
from steps.compression import torchrun_env
from steps.core import files, lineage
from steps.core.layout import metrics_path

RUN_ID_FILE_ENV = "SHRINKFLOW_RUN_ID_FILE"
"""Set in the ranks' environment by torchrun() below: where rank 0 writes the id of the MLflow run it opened."""
CODE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding this checkout's `steps` package: the ranks import the code the caller runs."""
_ROOT_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)(?:\s*\(pid:\s*\d+\))?[ \t]*([^\n]*)",
                         re.DOTALL)
"""torchrun's summary of the first failure: `rank : 1 ...  exitcode : 3 (pid: 123) SIGKILL`; only the rest of the
exitcode line is the signal (the next line is the error file's)."""


class RankFailed(ChildProcessError):
    """A rank of a stage run under torchrun failed; names the rank and its exit code. `run_id`: the MLflow run
    rank 0 had opened ("" when it opened none), left running by the ranks' ends."""

    def __init__(self, message: str, run_id: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id


def needed(resources: config.ResourcesConfig) -> bool:
    """True when the stage must start torchrun itself: more than one process asked for, and not a rank already.
    Across machines (nodes > 1) the scheduler starts torchrun on each: refused here, naming the key."""
    if torchrun_env.inside_torchrun():  # the one test of "a rank already" (parallel.process_group's too)
        world = torchrun_env.world_size()
        if world != resources.world_size:
            raise ValueError(f"torchrun started {world} ranks but resources.processes x resources.nodes is "
                             f"{resources.processes} x {resources.nodes}: set resources to what is launched")
        return False
    if resources.nodes > 1:
        raise ValueError(f"resources.nodes {resources.nodes}: a run across machines is started by torchrun --nnodes "
                         f"{resources.nodes} on each machine (a cluster scheduler), not by the stage itself")
    return resources.processes > 1


def torchrun(stage: str, params: config.Params, root: Path, origin: lineage.Origin, result_type, *,
             tracking_uri: str | None):
    """Run `stage` on resources.processes ranks under torchrun, wait, and return rank 0's result (`result_type`
    read from metrics/<stage>.json); RankFailed when a rank fails. `tracking_uri`: the MLflow store the user chose
    (tracking.user_uri()), None for the project's own."""
    with tempfile.TemporaryDirectory(prefix=f"shrinkflow-{stage}-ranks-") as scratch:
        spec, run_id_file = Path(scratch) / "launch.json", Path(scratch) / "run_id"
        spec.write_text(json.dumps({"params": params.model_dump(mode="json"), "origin": dataclasses.asdict(origin)}))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                   "--nproc-per-node", str(params.resources.processes), "--log-dir", str(Path(scratch) / "logs"),
                   "--redirects", "2", "--tee", "2",  # each rank's stderr kept in a file and shown
                   "-m", f"steps.{stage}", "--root", str(root), "--launch-spec", str(spec)]
        code, tail = _run(command, {**_env(tracking_uri), RUN_ID_FILE_ENV: str(run_id_file)})
        if code != 0:
            raise RankFailed(_failure(stage, params.resources.processes, code, tail, Path(scratch) / "logs"),
                             run_id=run_id_file.read_text() if run_id_file.is_file() else "")
    return result_type.read(root / metrics_path(stage))


def record_run_id(run_id: str) -> None:
    """On rank 0, as soon as its MLflow run opens: the id where the launching process finds it if the ranks fail
    (atomically: a rank killed while writing leaves no half id). Nothing outside a launch of torchrun() (one
    process, or ranks a scheduler started)."""
    path = os.environ.get(RUN_ID_FILE_ENV)
    if path:
        files.atomic_write(Path(path), lambda tmp: tmp.write_text(run_id))


def read_spec(path: Path, stage: str) -> tuple[config.Params, lineage.Origin]:
    """The params snapshot and origin a launching process handed its ranks."""
    spec = json.loads(Path(path).read_text())
    return config.validate(spec["params"], source=f"{path} (params)", stage=stage), lineage.Origin(**spec["origin"])


def _env(tracking_uri: str | None) -> dict[str, str]:
    """This environment with this checkout first on PYTHONPATH, and MLFLOW_TRACKING_URI the user's choice alone
    (`tracking_uri`; unset for the project's local store): mlflow.set_tracking_uri writes there the local store
    of the last project this process recorded into, which would send rank 0's run into another project's store
    (a test or a benchmark runs several projects in one process)."""
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": str(CODE_ROOT) + (os.pathsep + path if path else "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def _run(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """torchrun's exit code and the last lines of its stderr (passed through as they come, so progress shows)."""
    tail: collections.deque[str] = collections.deque(maxlen=200)
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, errors="replace") as proc:
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line)
    return proc.returncode, "".join(tail)


def _failure(stage: str, processes: int, code: int, tail: str, logs: Path) -> str:
    """The failed rank, its exit code (or signal) and its last stderr line, from torchrun's "Root Cause" summary
    (torch.distributed.elastic's ChildFailedError) and the rank's own stderr file; torchrun's tail otherwise."""
    found = _ROOT_CAUSE.search(tail)
    if found is None:
        last = "\n".join(tail.strip().splitlines()[-5:])
        return f"{stage} stage failed: torchrun exited with code {code} ({processes} processes):\n{last}"
    rank, exit_code, signal = int(found.group(1)), int(found.group(2)), found.group(3).strip()
    said = _last_line(logs, rank)
    return (f"{stage} stage failed: rank {rank} of {processes} exited with code {exit_code}"
            f"{f' ({signal})' if signal and signal != '<N/A>' else ''}{f': {said}' if said else ''}")


def _last_line(logs: Path, rank: int) -> str:
    """The last non-empty line rank `rank` wrote on stderr (torchrun's --log-dir keeps one file per rank)."""
    for path in sorted(logs.glob(f"**/attempt_*/{rank}/stderr.log")):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""
