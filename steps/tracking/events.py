"""Append-only records in the tracking backend: history events, audits, and the registry-lock primitive.

Each record is one finished MLflow run, created and never edited, independent of any active run.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from steps.tracking.runs import log_run_metrics
from steps.tracking.store import experiment_id, is_missing


def record_event(experiment: str, run_name: str, tags: dict[str, str], metrics: dict[str, float],
                 document: dict) -> str:
    """One finished run holding one event: its tags, metrics and `event.json`; returns the run id."""
    client = MlflowClient()
    run_id = client.create_run(experiment_id(experiment), run_name=run_name,
                               tags={k: str(v) for k, v in tags.items()}).info.run_id
    log_run_metrics(run_id, metrics)
    client.log_dict(run_id, document, "event.json")
    client.set_terminated(run_id)
    return run_id


def record_files(experiment: str, run_name: str, tags: dict[str, str], files: list[Path], passed: bool) -> str:
    """One finished run holding report files (an audit): FINISHED when `passed`, else FAILED."""
    client = MlflowClient()
    run_id = client.create_run(experiment_id(experiment), run_name=run_name, tags=tags).info.run_id
    for path in files:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, status="FINISHED" if passed else "FAILED")
    return run_id


def search_events(experiment: str, filter_string: str) -> list:
    """All runs of `experiment` matching `filter_string`, oldest first (every page)."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], filter_string, order_by=["attributes.start_time ASC"],
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


# --- a registered model used as a mutex (steps/registry/lock.py) ---------------------------------------------------

def create_lock_model(name: str, tags: dict[str, str]) -> bool:
    """Create registered model `name` as a mutex; False when it already exists.

    The registry's database has the model name as primary key, so of any number of concurrent
    creates, from any machine, exactly one succeeds.
    """
    try:
        MlflowClient().create_registered_model(name, tags=tags,
                                               description="shrinkflow promotion lock; deleted on release")
    except MlflowException as err:
        if err.error_code == "RESOURCE_ALREADY_EXISTS":
            return False
        raise
    return True


def lock_model_tags(name: str) -> dict[str, str] | None:
    try:
        return dict(MlflowClient().get_registered_model(name).tags)
    except MlflowException as err:
        if is_missing(err):
            return None
        raise


def delete_registered_model(name: str) -> None:
    """Delete `name`; a model already gone is fine (someone else released or broke the lock)."""
    try:
        MlflowClient().delete_registered_model(name)
    except MlflowException as err:
        if not is_missing(err):
            raise
