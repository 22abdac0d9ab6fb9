"""The sweep flow: many configurations at once, each a Prefect task on a Dask task runner.

Data and teacher are shared: they run once, in the project itself, through the
same cached, DVC-recorded task as `shrinkflow run` (so either reuses the
other's work). Each member then gets its own directory under
`.shrinkflow/sweeps/<parent run>/<member>` holding the shared data and
teacher plus its params.yaml, and runs prune and distill there as one Dask
task: members never share a checkout (DVC takes a repo lock, and the stages
write fixed paths). Every member is an MLflow run nested under the sweep's
parent run, with its own stage runs nested under it.

When all members are done, every model is measured side by side in this
process (accuracy on the test split, latency at one thread count), because
latency measured inside members that share the CPU would compare noise; the
Pareto frontier goes to the parent run as a table and a plot.

Nothing is promoted: members are experiments. Ship one with
`shrinkflow run -S <its settings>`, which gates it against @champion.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import os
import shutil
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, task
from prefect.settings import PREFECT_API_URL
from prefect_dask import DaskTaskRunner

from flows.compress import run_recorded
from flows.runlock import project_lock
from steps import config, tracking
from steps.core import frontier, lineage
from steps.core.dag import stage
from steps.core.datasets import load_splits
from steps.core.layout import DATA_DIR, STATE_DIR, metrics_path
from steps.core.measurement import measure_models
from steps.core.names import ModelRole, Tag
from steps.core.reports import close_figure
from steps.core.results import TeacherResult

SHARED_STAGES = ("data", "teacher")
MEMBER_STAGES = ("prune", "distill")
MEMBER_MODELS = (ModelRole.PRUNED, ModelRole.STUDENT)
SWEEPS_DIR = f"{STATE_DIR}/sweeps"
ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"
"""Dask's own setting for the scheduler to connect to; wins over params.yaml's sweep.scheduler_address."""


class SweepFailed(RuntimeError):
    """Members failed; the message names each one and its cause."""


def task_runner(params: config.Params, address: str | None = None, workers: int | None = None) -> DaskTaskRunner:
    """An existing Dask cluster when an address is given (argument, env, params), else a LocalCluster
    of one single-threaded worker process per `params.threads` cores (torch sets its own threads)."""
    address = address or os.environ.get(ADDRESS_ENV) or params.sweep.scheduler_address
    if address:
        return DaskTaskRunner(address=address)
    cores = len(os.sched_getaffinity(0))
    workers = workers or params.sweep.workers or max(1, cores // params.threads)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def _require_prefect_api() -> None:
    """Dask workers are other processes: without PREFECT_API_URL each would start a temporary Prefect server of
    its own. `shrinkflow sweep` starts one for them all (runtime.temporary_api); a deployment has its server's."""
    if not PREFECT_API_URL.value():
        raise RuntimeError("the sweep needs a Prefect API its Dask workers can reach (PREFECT_API_URL): run it with "
                           "`shrinkflow sweep`, which starts a temporary one, or point PREFECT_API_URL at a server")


def run_sweep(root: Path, grid: dict | None = None, address: str | None = None, workers: int | None = None) -> dict:
    """The sweep flow on its Dask task runner (see `task_runner`), all processes reporting to one Prefect API,
    under the project run lock (its shared stages run in the checkout itself)."""
    _require_prefect_api()
    params = config.load(root)
    with project_lock(root, params.run.lock_timeout_s):
        return sweep.with_options(task_runner=task_runner(params, address, workers))(root=str(root), grid=grid)


@contextlib.contextmanager
def sweep_run(root: Path, params: config.Params, grid: dict, run_name: str):
    """The parent run of a sweep, holding its grid; yields the run id."""
    tags = {**lineage.code_tags(root), Tag.SWEEP: "parent"}
    with tracking.client_run(root, params.tracking.experiment, run_name, tags) as run_id:
        tracking.log_run_dict(run_id, grid, "sweep/grid.json")
        tracking.log_run_params(run_id, {f"grid.{key}": ",".join(map(str, values)) for key, values in grid.items()})
        yield run_id


@contextlib.contextmanager
def member_run(root: Path, params: config.Params, parent_run_id: str, name: str, overrides: dict):
    """A sweep member's run, nested under the sweep's parent run, with its overrides as params."""
    label = ", ".join(f"{k}={v}" for k, v in overrides.items())
    tags = {**lineage.code_tags(root), tracking.PARENT_RUN_TAG: parent_run_id, Tag.SWEEP: name,
            Tag.SWEEP_LABEL: label}
    with tracking.client_run(root, params.tracking.experiment, f"{name}: {label}", tags) as run_id:
        tracking.log_run_params(run_id, overrides)
        yield run_id


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard links: the data split can be large and no stage writes into its inputs (files are replaced by rename)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)


def seed_member(root: Path, member_root: Path, params: config.Params) -> Path:
    """A member's own directory: the shared data and teacher (its file and spec, or its folder: hf), and its
    params.yaml."""
    for rel in (DATA_DIR, *stage("teacher").outputs(params)):
        shared = root / rel
        for src in sorted(shared.rglob("*")) if shared.is_dir() else [shared]:
            if src.is_file():
                _link_or_copy(src, member_root / src.relative_to(root))
    (member_root / config.PARAMS_FILE).write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    return member_root


@task(task_run_name="member {name}")
def train_member(member_root: str, name: str, raw_params: dict, overrides: dict, parent_run_id: str,
                 tracking_uri: str) -> str:
    """Run the member stages in the member's directory (on a Dask worker); returns its MLflow run id."""
    tracking.record_into(tracking_uri)
    params, root = config.validate(raw_params, source=f"sweep member {name}"), Path(member_root)
    with member_run(root, params, parent_run_id, name, overrides) as run_id:
        stage_runs = [importlib.import_module(stage(s).module).run(params, root).mlflow_run_id
                      for s in MEMBER_STAGES]
        tracking.adopt_runs(run_id, stage_runs)
    return run_id


def _measure(root: Path, params: config.Params, done: dict[str, tuple[config.SweepMember, Path]]):
    """Every member's models and the shared teacher (first: the speedup reference), side by side."""
    models = {"teacher": (root, ModelRole.TEACHER)}
    labels = {}
    for name, (member, member_root) in done.items():
        for role in MEMBER_MODELS:
            models[f"{name} {role}"] = (member_root, role)
            labels[f"{name} {role}"] = {"member": name, "label": member.label}
    test = load_splits(root, ("test",))["test"]
    return frontier.frontier_frame(measure_models(models, test, params.evaluate, params.threads), labels)


def _log_results(parent_run_id: str, data, run_ids: dict[str, str], params: config.Params) -> None:
    for name, run_id in run_ids.items():
        rows = data[data["member"] == name]
        metrics = {f"{model.split(' ', 1)[1]}.{k}": row[k] for model, row in rows.iterrows()
                   for k in ("accuracy", "nonzeros", "compressed_bytes", "latency_p50_ms", "speedup")}
        tracking.log_run_metrics(run_id, metrics)
        fronts = [f"{model} ({flag.removesuffix('_front')})" for model, row in rows.iterrows()
                  for flag in frontier.FRONTS.values() if row[flag]]
        tracking.set_run_tags(run_id, {Tag.FRONTIER: ", ".join(fronts) or "none"})
    tracking.log_run_table(parent_run_id, data.reset_index(), "sweep/frontier.json")
    figure = frontier.figure(data, params.evaluate.latency_batch_size)
    tracking.log_run_figure(parent_run_id, figure, "sweep/pareto.png")
    close_figure(figure)


@flow(name="sweep", log_prints=True)
def sweep(root: str = ".", grid: dict | None = None) -> dict:
    """Train one member per combination of `grid` (default: params.yaml's sweep.grid); returns the
    shared stages' states, the parent run id, each member's run id and the frontier table (records)."""
    logger = get_run_logger()
    root_path = Path(root).resolve()
    params = config.load(root_path)
    grid = grid if grid is not None else params.sweep.grid
    if not grid:
        raise config.ConfigError("nothing to sweep: give -S KEY=V1,V2,... or set sweep.grid in params.yaml")
    members = config.sweep_members(params, grid, "sweep grid")
    shared = {name: run_recorded(str(root_path), stage(name)) for name in SHARED_STAGES}
    run_name = f"sweep {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} ({len(members)} members)"
    with sweep_run(root_path, params, grid, run_name) as parent_run_id:
        teacher = TeacherResult.read(root_path / metrics_path("teacher"))
        tracking.set_run_tags(parent_run_id, {Tag.TEACHER_RUN: teacher.mlflow_run_id})
        workdir = root_path / SWEEPS_DIR / parent_run_id
        futures = {}
        for m in members:
            member_root = seed_member(root_path, workdir / m.name, m.params)
            futures[m.name] = (m, member_root, train_member.submit(
                str(member_root), m.name, m.params.model_dump(mode="json"), m.overrides, parent_run_id,
                tracking.tracking_uri(root_path)))
        run_ids, done, failures = {}, {}, []
        for name, (m, member_root, future) in futures.items():
            future.wait()
            state = future.state
            if state.is_completed():
                run_ids[name], done[name] = future.result(), (m, member_root)
            else:
                failures.append(f"{name} ({m.label}): {state.message}")
        if done:
            data = _measure(root_path, params, done)
            _log_results(parent_run_id, data, run_ids, params)
        if failures:
            raise SweepFailed(f"{len(failures)} of {len(members)} member(s) failed: " + "; ".join(failures))
    logger.info("sweep %s: %d members in %s", parent_run_id, len(members), workdir)
    return {"shared": shared, "parent_run_id": parent_run_id, "members": run_ids, "workdir": str(workdir),
            "frontier": data.reset_index().to_dict(orient="records")}


@flow(name="sweep-deployment")
def deployed_sweep(root: str = ".", grid: dict | None = None, address: str | None = None,
                   workers: int | None = None) -> dict:
    """Entry point for a Prefect deployment (e.g. on a Kubernetes work pool, see infra/SWEEPS.md): the sweep
    as a subflow on its Dask task runner, chosen when it runs (a decorated flow's runner is fixed at import)."""
    return run_sweep(Path(root).resolve(), grid, address, workers)
