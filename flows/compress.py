"""The main Prefect flow: the stages of steps/core/dag.py as cached tasks.

Each stage is a task whose cache key is the content of its dependency files
(code included), its params sections and the project root: the same identity
DVC uses, so a rerun with nothing changed is all `Cached`, and a changed
param reruns from the first stage that reads it. After each stage the flow
records it in dvc.lock (`dvc commit`), and at the end pushes the outputs to
the DVC remote, so `dvc repro` and the flow agree on what is up to date.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.context import TaskRunContext, get_run_context
from prefect.states import Completed
from prefect.tasks import exponential_backoff

from steps import config, storage, tracking
from steps.core import lineage, profiles
from steps.core.dag import STAGES, Stage, stage
from steps.core.hashing import content_hash
from steps.core.layout import PROMOTION
from steps.registry.lock import TRIGGER_ENV

REGISTRY_STAGE = "promote"
"""The stage with an output outside the project (the registry). Nothing is registered before its data
and models are on the DVC remote: an auditor must be able to fetch them."""


def stage_key(root: Path, st: Stage, params: config.Params) -> str:
    digest = hashlib.sha256(f"{st.name}|{root.resolve()}|{params.section_hash(*st.params)}".encode())
    for dep in st.resolved_deps(params.model_dump(mode="json")):
        digest.update(f"|{dep}={content_hash(root / dep)}".encode())
    if st.name == REGISTRY_STAGE:  # another registry (e.g. the services profile) is another promotion
        digest.update(f"|registry={tracking.tracking_uri(root)}".encode())
    return digest.hexdigest()


def _cache_key(context: TaskRunContext, parameters: dict) -> str:
    root = Path(parameters["root"])
    return stage_key(root, stage(parameters["stage_name"]), config.load(root))


def output_hashes(root: Path, st: Stage) -> dict[str, str]:
    return {out: content_hash(root / out) for out in (*st.outs, *st.metrics, *st.plots)}


def outputs_intact(root: Path, st: Stage, recorded: dict[str, str]) -> bool:
    """The files a (possibly cached) stage produced are on disk unchanged, and for promote the
    version it registered is still in the registry."""
    if output_hashes(root, st) != recorded:
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
def run_stage(root: str, stage_name: str) -> dict[str, str]:
    """Run `steps.<stage_name>.run()`; returns the hashes of what it wrote."""
    st = stage(stage_name)
    module = importlib.import_module(st.module)
    module.run(config.load(root), Path(root))
    return output_hashes(Path(root), st)


class StageFailed(RuntimeError):
    """A stage raised; the message names it (the cause is chained)."""


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


def _run(root: str, st: Stage, refresh: bool = False):
    # No whole-stage retries: MLflow retries each request itself (steps/tracking.py), and rerunning
    # promote after a half-done registration would register the same student twice.
    task_ = run_stage.with_options(refresh_cache=True) if refresh else run_stage
    return task_(root, st.name, return_state=True)


def run_recorded(root: str, st: Stage) -> str:
    """Run one stage as a cached task (again if its cached outputs are gone) and record it in dvc.lock;
    returns the final state's name. Raises StageFailed if it failed: later stages must not run."""
    state = _run(root, st)
    outputs = _result(st, state)
    if not outputs_intact(Path(root), st, outputs):
        get_run_logger().warning("cached outputs of %s are missing or changed; running it again", st.name)
        state = _run(root, st, refresh=True)
        _result(st, state)
    storage.commit_stage(Path(root), st.name)
    return state.name


def _trigger(flow_run) -> str:
    """What started this run, for the promotion history: a deployment (e.g. the schedule) or a direct call."""
    from prefect.runtime import deployment

    if flow_run.deployment_id is None:
        return f"prefect flow run {flow_run.name} ({flow_run.id}), started directly"
    how = "schedule" if flow_run.auto_scheduled else "run on demand"
    return f"prefect deployment {deployment.name} ({how}), flow run {flow_run.name} ({flow_run.id})"


def _promotion_summary(root: str) -> str:
    """'promoted: ...' or 'not promoted: <gate>, ...' from the promote stage's decision."""
    return json.loads((Path(root) / PROMOTION).read_text())["summary"]


@flow(name="compress", log_prints=True)
def compress(root: str = "."):
    """Run every stage in order; completes with each stage's final state name, how many files were pushed and
    the promotion summary (a gate that says no is a result, not a failure)."""
    logger = get_run_logger()
    root = str(Path(root).resolve())
    params = config.load(root)  # refuse a bad params.yaml before any task runs
    profile, source = profiles.select(Path(root))
    remote = storage.use_profile(Path(root), profile)  # e.g. the S3 remote of the services profile
    logger.info("profile %s (from %s)", profile.name, source)
    flow_run = get_run_context().flow_run
    os.environ[lineage.PIPELINE_RUN_ENV] = str(flow_run.id)
    os.environ[TRIGGER_ENV] = _trigger(flow_run)
    states: dict[str, str] = {}
    pushed = 0
    for st in STAGES:
        if st.name == REGISTRY_STAGE:
            pushed = publish(root, remote, params.storage)
        states[st.name] = run_recorded(root, st)
    logger.info("pushed %d file(s) to the DVC remote", pushed)
    summary = _promotion_summary(root)
    logger.info(summary)
    return Completed(message=summary, data={"states": states, "pushed": pushed, "promotion": summary})
