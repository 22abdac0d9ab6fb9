"""MLflow runs: open one, log into it, read it back.

A run opened with `open_run` is MLflow's active (fluent) run of this thread, for the stages; a
`client_run` is independent of it (a sweep's parent and member runs stay open while the member's
stages open their own), so everything about one of those takes its run id.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

from steps.core.names import Tag
from steps.core.results import flatten
from steps.tracking.store import experiment_id, use_store

PARENT_RUN_TAG = Tag.MLFLOW_PARENT_RUN
LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"
"""MLflow's run tag listing the artifacts `log_table` wrote, {"path", "type": "table"} each."""


@contextlib.contextmanager
def open_run(root: Path, experiment: str, name: str, params: dict, tags: dict[str, str],
             on_open: Callable[[str], None] | None = None) -> Iterator[str]:
    """The active run `name` in `experiment` of the project's store, with `params` (nested: logged as dotted
    keys) and `tags`; yields the run id. Failed when the block raises, finished otherwise. `on_open(run_id)` runs
    as soon as the run exists, before its params are logged (which can take a while against a remote server)."""
    use_store(root)
    with mlflow.start_run(experiment_id=experiment_id(experiment), run_name=name, tags=tags) as run:
        if on_open is not None:
            on_open(run.info.run_id)
        mlflow.log_params(flatten(params))
        yield run.info.run_id


@contextlib.contextmanager
def client_run(root: Path, experiment: str, name: str, tags: dict[str, str]) -> Iterator[str]:
    """A run that is not the thread's active run; yields its id, and ends it FAILED if the block raises."""
    use_store(root)
    client = MlflowClient()
    run_id = client.create_run(experiment_id(experiment), run_name=name, tags=tags).info.run_id
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


# --- the active run ------------------------------------------------------------------------------------------------

def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_dataset(name: str, digest: str, features, targets, context: str) -> None:
    """Record a dataset input of the active run (MLflow's dataset lineage): its name, digest and a schema
    taken from the example `features`/`targets` arrays."""
    dataset = mlflow.data.from_numpy(features, targets=targets, name=name, digest=digest)
    mlflow.log_input(dataset, context=context)


def log_files(paths: list[Path], artifact_path: str) -> None:
    """Each file, or folder (a checkpoint folder: as `<artifact_path>/<its name>/`), under `artifact_path`."""
    for path in paths:
        if Path(path).is_dir():
            mlflow.log_artifacts(str(path), artifact_path=f"{artifact_path}/{Path(path).name}")
        else:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_table(frame, artifact_file: str) -> None:
    mlflow.log_table(data=frame, artifact_file=artifact_file)


def log_figure(figure, artifact_file: str) -> None:
    mlflow.log_figure(figure, artifact_file)


def log_dict(data: dict, artifact_file: str) -> None:
    mlflow.log_dict(data, artifact_file)


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


# --- any run, by id --------------------------------------------------------------------------------------------------

def log_run_dataset(run_id: str, name: str, digest: str, source: str, features, targets, context: str) -> None:
    """A dataset input of run `run_id` (MLflow's dataset lineage): name, digest, source and the schema of the
    example `features`/`targets` arrays."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    with warnings.catch_warnings():  # a local path matches two equivalent source types; MLflow warns and picks one
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(features, targets=targets, name=name, digest=digest, source=source)
    MlflowClient().log_inputs(run_id, [DatasetInput(dataset._to_mlflow_entity(),
                                                    [InputTag(MLFLOW_DATASET_CONTEXT, context)])])


def log_run_params(run_id: str, params: dict) -> None:
    client = MlflowClient()
    for key, value in flatten(params).items():
        client.log_param(run_id, key, value)


def log_run_metrics(run_id: str, metrics: dict[str, float]) -> None:
    now = get_current_time_millis()
    MlflowClient().log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


def log_run_dict(run_id: str, data: dict, artifact_file: str) -> None:
    MlflowClient().log_dict(run_id, data, artifact_file)


def log_run_table(run_id: str, frame, artifact_file: str) -> None:
    MlflowClient().log_table(run_id, data=frame, artifact_file=artifact_file)


def log_run_figure(run_id: str, figure, artifact_file: str) -> None:
    MlflowClient().log_figure(run_id, figure, artifact_file)


def log_run_files(run_id: str, paths: list[Path]) -> None:
    client = MlflowClient()
    for path in paths:
        client.log_artifact(run_id, str(path))


def copy_artifacts(source_run_id: str, target_run_id: str, paths: list[str]) -> list[str]:
    """Copy the artifacts `paths` of one run that it has into another run, at the same paths; returns those copied.

    A table logged with `log_table` is logged as a table again, so the UI shows it as one there too."""
    client = MlflowClient()
    folders = {posixpath.dirname(path) or None for path in paths}
    present = {item.path for folder in folders for item in client.list_artifacts(source_run_id, folder)}
    source = client.get_run(source_run_id)
    tables = {entry["path"] for entry in json.loads(source.data.tags.get(LOGGED_ARTIFACTS, "[]"))
              if entry.get("type") == "table"}
    copied = [path for path in paths if path in present]
    with tempfile.TemporaryDirectory(prefix="shrinkflow-artifacts-") as scratch:
        for path in copied:
            if path in tables:
                table = client.load_table(source.info.experiment_id, path, [source_run_id])
                client.log_table(target_run_id, table, path)
            else:
                local = client.download_artifacts(source_run_id, path, scratch)
                client.log_artifact(target_run_id, local, artifact_path=posixpath.dirname(path) or None)
    return copied


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def adopt_runs(parent_run_id: str, run_ids: list[str]) -> None:
    """Nest runs that were opened on their own (a member's stage runs) under `parent_run_id`."""
    set_tags_of = MlflowClient().set_tag
    for run_id in run_ids:
        set_tags_of(run_id, PARENT_RUN_TAG, parent_run_id)


def fail_if_running(run_id: str) -> bool:
    """End run `run_id` FAILED if it is still RUNNING: the process that opened it was stopped by a signal before it
    could end it. True when it did; a run already ended keeps its status."""
    client = MlflowClient()
    if client.get_run(run_id).info.status != "RUNNING":
        return False
    client.set_terminated(run_id, "FAILED")
    return True


def run_record(run_id: str):
    """The MLflow Run (params, metrics, tags)."""
    return MlflowClient().get_run(run_id)


def run_artifact_uri(run_id: str, path: str) -> str:
    return f"runs:/{run_id}/{path}"


def download_artifacts(uri: str, dest: Path) -> Path:
    """Download `uri` (models:/..., runs:/...) into `dest`; returns the local path."""
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))


def download_if_logged(uri: str, dest: Path) -> Path | None:
    """`download_artifacts`, or None when nothing is logged at `uri` (one file looked for among a run's artifacts)."""
    try:
        return download_artifacts(uri, dest)
    except (MlflowException, OSError):
        return None
