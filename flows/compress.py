"""The main Prefect flow: the stages of steps/core/dag.py as cached tasks, one run at a time, one set of params.

- One run per checkout: the flow holds the project run lock (flows/runlock.py) for its whole
  duration, so a scheduled run and a run by hand never interleave.
- One set of params: params.yaml is read once, under the lock, and every stage runs with that
  snapshot; its hash is checked again before each stage and before each `dvc commit` (dvc.lock
  records the file), and a change fails the run naming the file, before anything is registered.
- Each stage is a task whose cache key is `steps.core.staleness.stage_key`: the content of its
  dependency files (code included), its params sections and the project root, the identity DVC
  uses; a rerun with nothing changed is all `Cached`. After each stage the flow records it in
  dvc.lock (`dvc commit`); before promote it pushes to the DVC remote.
- When the last run's record shows nothing stale, no task runs at all (the same check lets
  `shrinkflow run` answer without starting Prefect).
- MLflow: one parent run per pipeline run, the stage runs nested under it, the dataset as its input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.context import TaskRunContext, get_run_context
from prefect.states import Completed
from prefect.tasks import exponential_backoff

from steps import config, storage, tracking
from steps.compression import progress
from flows import staleness
from steps.core import datasets, lineage, profiles
from steps.core.dag import STAGE_NAMES, STAGES, Stage, stage
from steps.core.hashing import sha256
from steps.core.layout import PARAMS_FILE, PROMOTION
from steps.core.names import Tag
from flows.runlock import project_lock

REGISTRY_STAGE = staleness.REGISTRY_STAGE
DATA_STAGE = "data"
"""The stage that produces the dataset; the MLflow parent run records it, so it opens after it (the data stage
itself opens no MLflow run, so it takes no lineage.Origin)."""
PROFILE_SOURCE_ENV = "SHRINKFLOW_PROFILE_SOURCE"
"""Where the CLI found the profile (it then sets SHRINKFLOW_PROFILE itself), for the run's log."""


class StageFailed(RuntimeError):
    """A stage raised; the message names it (the cause is chained)."""


class ParamsChanged(RuntimeError):
    """params.yaml changed during the run; the message names the file and both hashes."""


def check_params_unchanged(root: Path, at_start: str) -> None:
    now = sha256(root / PARAMS_FILE)
    if now != at_start:
        raise ParamsChanged(f"{root / PARAMS_FILE} changed during the run (sha256 {at_start[:12]} at start, "
                            f"{now[:12]} now): rerun to use the new values")


def _cache_key(context: TaskRunContext, parameters: dict) -> str:
    root = Path(parameters["root"])
    return staleness.stage_key(root, stage(parameters["stage_name"]), config.validate(parameters["params"]),
                               tracking.tracking_uri(root))


def outputs_intact(root: Path, st: Stage, params, recorded: dict[str, str]) -> bool:
    """The files a (possibly cached) stage produced are on disk unchanged, and for promote the
    version it registered is still in the registry."""
    if staleness.output_hashes(root, st, params) != recorded:
        return False
    if st.name == REGISTRY_STAGE:
        decision = json.loads((root / PROMOTION).read_text())
        tracking.use_store(root)
        return tracking.version_exists(decision["model_name"], decision["version"])
    return True


def is_transient(task, task_run, state) -> bool:
    """Retry network-ish failures only; bad data or config fails at once."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, (ConnectionError, TimeoutError))


@task(cache_key_fn=_cache_key, persist_result=True, task_run_name="{stage_name}", retry_condition_fn=is_transient)
def run_stage(root: str, stage_name: str, params: dict, params_sha256: str,
              origin: lineage.Origin = lineage.STANDALONE) -> dict[str, str]:
    """Run `steps.<stage_name>.run()` with the run's params snapshot and where it comes from (`origin`, which the
    cache key leaves out); returns the hashes of what it wrote."""
    import importlib

    st = stage(stage_name)
    check_params_unchanged(Path(root), params_sha256)
    run = importlib.import_module(st.module).run
    validated = config.validate(params)
    with progress_in_run_log():
        if st.name == DATA_STAGE:
            run(validated, Path(root))
        else:
            run(validated, Path(root), origin)
    return staleness.output_hashes(Path(root), st, validated)


class _ToRunLogger(logging.Handler):
    def __init__(self, run_logger) -> None:
        super().__init__()
        self.run_logger = run_logger

    def emit(self, record: logging.LogRecord) -> None:
        self.run_logger.log(record.levelno, record.getMessage())


@contextlib.contextmanager
def progress_in_run_log():
    """The stage's progress lines (steps/compression/progress.py) through this task run's logger: in Prefect's
    terminal output as "Task run 'teacher' - teacher: epoch 1/10, ...", and in the run's log on the Prefect API.
    Not also propagated to the root logger, whose Prefect handler would print each line a second time."""
    source = logging.getLogger(progress.LOGGER_NAME)
    handler, propagated = _ToRunLogger(get_run_logger()), source.propagate
    source.addHandler(handler)
    source.propagate = False
    try:
        yield
    finally:
        source.removeHandler(handler)
        source.propagate = propagated


def _result(st: Stage, state) -> dict[str, str]:
    try:
        return state.result()
    except Exception as err:
        raise StageFailed(f"stage '{st.name}' failed: {type(err).__name__}: {err}") from err


@task(retry_condition_fn=is_transient)
def push_outputs(root: str, remote: str | None) -> int:
    return storage.push(Path(root), remote)


def publish(root: str, remote: str | None, cfg: config.StorageConfig) -> int:
    """Push to the DVC remote, retrying connection errors `cfg.push_retries` times with exponential back-off."""
    delays = exponential_backoff(cfg.retry_backoff_s)(cfg.push_retries) if cfg.push_retries else 0
    push = push_outputs.with_options(retries=cfg.push_retries, retry_delay_seconds=delays)
    state = push(root, remote, return_state=True)
    try:
        return state.result()
    except Exception as err:
        raise StageFailed(f"publishing to the DVC remote failed (before stage '{REGISTRY_STAGE}', "
                          f"so nothing was registered): {err}") from err


class Snapshot:
    """The params of one run: read once, under the lock; every stage gets these, not the file."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.sha256 = sha256(Path(root) / PARAMS_FILE)
        self.params = config.load(root)
        self.dumped = self.params.model_dump(mode="json")

    def run(self, st: Stage, origin: lineage.Origin, refresh: bool = False):
        # No whole-stage retries: MLflow retries each request itself (steps/tracking/), and rerunning
        # promote after a half-done registration would register the same student twice.
        task_ = run_stage.with_options(refresh_cache=True) if refresh else run_stage
        return task_(self.root, st.name, self.dumped, self.sha256, origin, return_state=True)

    def run_recorded(self, st: Stage, origin: lineage.Origin = lineage.STANDALONE) -> tuple[str, dict[str, str]]:
        """Run one stage as a cached task (again if its cached outputs are gone) and record it in dvc.lock;
        returns the final state's name and the output hashes. Raises StageFailed: later stages must not run."""
        state = self.run(st, origin)
        outputs = _result(st, state)
        if not outputs_intact(Path(self.root), st, self.params, outputs):
            get_run_logger().warning("cached outputs of %s are missing or changed; running it again", st.name)
            state = self.run(st, origin, refresh=True)
            outputs = _result(st, state)
        check_params_unchanged(Path(self.root), self.sha256)  # dvc.lock records params.yaml as it is now
        storage.commit_stage(Path(self.root), st.name)
        return state.name, outputs


def run_recorded(root: str, st: Stage) -> str:
    """One stage with a fresh params snapshot (for the sweep's shared stages); returns its state's name."""
    return Snapshot(root).run_recorded(st)[0]


def _trigger(flow_run) -> str:
    """What started this run, for the promotion history: a deployment (e.g. the schedule) or a direct call."""
    from prefect.runtime import deployment

    if flow_run.deployment_id is None:
        return f"prefect flow run {flow_run.name} ({flow_run.id}), started directly"
    how = "schedule" if flow_run.auto_scheduled else "run on demand"
    return f"prefect deployment {deployment.name} ({how}), flow run {flow_run.name} ({flow_run.id})"


def _log_dataset(root: Path, parent_run_id: str) -> None:
    """The processed data as the parent run's dataset input, its digest the DVC data hash."""
    from steps.compression.training import numpy_rows  # torch: loaded once a stage runs, not by a no-change run

    name, _ = datasets.identity(root)
    test = datasets.load_splits(root, ("test",))["test"]
    digest = storage.data_hash(root) or "unrecorded"
    tracking.log_run_dataset(parent_run_id, name, digest, str(root / "data/processed"),
                             numpy_rows(test.x, slice(0, 1)), test.y[:1].numpy(), context="pipeline")


def _run_stages(root: str, snapshot: Snapshot, remote: str | None, flow_run) -> tuple[dict, int, dict]:
    """Every stage in order. Those that log to MLflow are nested under one parent run, opened once the data
    stage has produced the dataset it records (bad data stops the run before MLflow is touched)."""
    states, outputs, pushed = {}, {}, 0
    origin = lineage.Origin(pipeline_run=str(flow_run.id), trigger=_trigger(flow_run))
    with contextlib.ExitStack() as parent:
        for st in STAGES:
            if st.name == REGISTRY_STAGE:
                pushed = publish(root, remote, snapshot.params.storage)
            states[st.name], outputs[st.name] = snapshot.run_recorded(st, origin)
            if st.name == DATA_STAGE:
                try:
                    run_id = parent.enter_context(_parent_run(Path(root), snapshot, flow_run))
                except Exception as err:
                    later = STAGES[STAGE_NAMES.index(st.name) + 1].name
                    raise StageFailed(f"opening the pipeline's MLflow run (before stage '{later}') failed: "
                                      f"{type(err).__name__}: {err}") from err
                origin = dataclasses.replace(origin, parent_run=run_id)  # the later stages' runs nest under it
            if st.name in PARENT_ARTIFACTS:
                show_on_parent(Path(root), st, origin.parent_run)
    return states, pushed, outputs


PARENT_ARTIFACTS = {
    "evaluate": ["comparison.json", "per_class_recall.json", "pareto.png"],
    "prune": ["frontier.png", "sensitivity.png"],  # a budget search's; the prune knobs make no figures
}
"""What a person opening the pipeline's run should see there without opening each stage's: {stage: artifacts}."""


def show_on_parent(root: Path, st: Stage, parent_run_id: str) -> None:
    """Copy a stage's tables and plots (PARENT_ARTIFACTS) into the pipeline's run from the stage run that made this
    run's models: this run's own, or an earlier run's when the stage was cached. A copy that fails is a warning:
    the models and the record are whole without it."""
    run_id = "unknown"
    try:
        run_id = json.loads((root / st.metrics[0]).read_text())["mlflow_run_id"]
        tracking.copy_artifacts(run_id, parent_run_id, PARENT_ARTIFACTS[st.name])
    except Exception as err:  # MLflow's errors, a server blip, an unreadable record: nothing to retry for a view
        get_run_logger().warning("could not copy %s of %s's run %s into the pipeline's run %s: %s: %s",
                                 ", ".join(PARENT_ARTIFACTS[st.name]), st.name, run_id, parent_run_id,
                                 type(err).__name__, err)


@contextlib.contextmanager
def _parent_run(root: Path, snapshot: Snapshot, flow_run):
    """The pipeline run's MLflow run, named after the dataset and the flow run, with the dataset as its input;
    yields its id, which the later stages get as `lineage.Origin.parent_run` to nest their runs under it."""
    tags = {**lineage.code_tags(root), Tag.PIPELINE_RUN: str(flow_run.id),
            Tag.PARAMS_HASH: snapshot.params.section_hash()}
    name = f"{datasets.identity(root)[0]} {flow_run.name}"
    with tracking.client_run(root, snapshot.params.tracking.experiment, name, tags) as run_id:
        _log_dataset(root, run_id)
        yield run_id


@flow(name="compress", log_prints=True)
def compress(root: str = ".", force: bool = False):
    """Run every stage in order under the project lock; completes with each stage's final state name, how many
    files were pushed and the promotion summary (a gate that says no is a result, not a failure)."""
    logger = get_run_logger()
    root = str(Path(root).resolve())
    with project_lock(Path(root), config.load(root).run.lock_timeout_s,
                      on_wait=lambda holder: logger.warning("waiting for the project run lock, held by %s", holder)):
        snapshot = Snapshot(root)
        profile, source = profiles.select(Path(root))
        remote = storage.use_profile(Path(root), profile)  # e.g. the S3 remote of the services profile
        logger.info("profile %s (from %s)", profile.name, os.environ.get(PROFILE_SOURCE_ENV) or source)
        flow_run = get_run_context().flow_run
        registry_uri = tracking.tracking_uri(Path(root))
        record = staleness.read_record(Path(root))
        stale = staleness.stale_stages(Path(root), snapshot.params, record, registry_uri, _version_exists(root))
        if not stale and not force:
            message = f"up to date (nothing changed since {record.finished}, run {record.flow_run})"
            logger.info(message)
            return Completed(message=message, data={"states": {st.name: "Cached" for st in STAGES}, "pushed": 0,
                                                    "promotion": _promotion_summary(root), "up_to_date": True})
        states, pushed, outputs = _run_stages(root, snapshot, remote, flow_run)
        decision = json.loads((Path(root) / PROMOTION).read_text())
        staleness.write_record(Path(root), staleness.RunRecord(
            str(flow_run.id), datetime.now(UTC).isoformat(timespec="seconds"), registry_uri,
            {st.name: staleness.stage_key(Path(root), st, snapshot.params, registry_uri) for st in STAGES},
            outputs, decision["model_name"], decision["version"]))
    logger.info("pushed %d file(s) to the DVC remote", pushed)
    summary = decision["summary"]
    logger.info(summary)
    return Completed(message=summary, data={"states": states, "pushed": pushed, "promotion": summary,
                                            "up_to_date": False})


def _version_exists(root: str):
    def exists(name: str, version: int) -> bool:
        tracking.use_store(Path(root))
        return tracking.version_exists(name, version)

    return exists


def _promotion_summary(root: str) -> str:
    """'promoted: ...' or 'not promoted: <gate>, ...' from the promote stage's decision."""
    return json.loads((Path(root) / PROMOTION).read_text())["summary"]
