"""The one module that talks to MLflow: runs, metrics, artifacts and the registry.

Local profile: `sqlite:///<root>/mlflow.db` with artifacts in `<root>/mlartifacts`
(`mlflow ui --backend-store-uri sqlite:///mlflow.db` at the project root shows
them). `MLFLOW_TRACKING_URI` in the environment selects a server instead (the services
profiles): a server that does not answer fails with `TrackingUnavailable`, naming its URI.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# A tracking server that is down should fail the stage in seconds, not after MLflow's default
# of 7 retries with exponential backoff (minutes); transient blips still get retried.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

import mlflow  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from steps import config, lineage  # noqa: E402
from steps.names import Tag  # noqa: E402
from steps.pipeline import model_files, stage  # noqa: E402

warnings.filterwarnings("ignore", message=".*noload.*")  # MLflow's own SQLAlchemy usage
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

# The user's choice, read once: mlflow.set_tracking_uri() writes MLFLOW_TRACKING_URI into the
# environment itself, so reading it later would mistake our own local store for a server.
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")

PIPELINE_RUN_ENV = "SHRINKFLOW_PIPELINE_RUN"
"""Set by the Prefect flow so every stage's MLflow run names the flow run that made it."""


class TrackingUnavailable(ConnectionError):
    """The MLflow tracking server did not answer; the message names its URI (never its credentials)."""


def _unreachable(err: MlflowException) -> BaseException | None:
    """The network error behind an MLflow request failure (MLflow re-raises it as a bare
    MlflowException, so it is only reachable as the implicit context), or None."""
    import requests

    cause = err.__cause__ or err.__context__
    return cause if isinstance(cause, (requests.ConnectionError, requests.Timeout)) else None


def _server_error(uri: str, cause: BaseException) -> TrackingUnavailable:
    from steps.profiles import redact

    return TrackingUnavailable(f"MLflow tracking server {redact(uri)} is unreachable: {cause}")


def check_server(uri: str, timeout_s: float = 5) -> str:
    """The version of the MLflow server at `uri` after one API call; TrackingUnavailable if it does not answer.

    `/health` first, with a short timeout and no retries, so a server that is down is reported
    in seconds; then a real (authenticated) API call, which a health check alone would not prove.
    """
    import requests

    base = uri.rstrip("/")
    try:
        requests.get(f"{base}/health", timeout=timeout_s).raise_for_status()
        server_version = requests.get(f"{base}/version", timeout=timeout_s).text.strip()
        MlflowClient(uri, uri).search_experiments(max_results=1)
    except requests.RequestException as err:
        raise _server_error(uri, err) from err
    except MlflowException as err:
        raise _server_error(uri, _unreachable(err) or err) from err
    return server_version


def tracking_uri(root: Path) -> str:
    return USER_TRACKING_URI or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def use_store(root: Path) -> None:
    mlflow.set_tracking_uri(tracking_uri(root))
    mlflow.set_registry_uri(tracking_uri(root))


def experiment_id(root: Path, name: str) -> str:
    """The experiment's id; created with an explicit artifact location on the local store."""
    use_store(root)
    try:
        found = mlflow.get_experiment_by_name(name)
    except MlflowException as err:  # the first request of every stage: say which server did not answer
        cause = _unreachable(err)
        if cause is None:
            raise
        raise _server_error(tracking_uri(root), cause) from err
    if found is not None:
        return found.experiment_id
    # A server decides where artifacts go; the local store keeps them inside the project.
    location = None if USER_TRACKING_URI else (Path(root).resolve() / "mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently by another process
        return mlflow.get_experiment_by_name(name).experiment_id


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a.b.c": leaf}: nested dicts as the dotted keys MLflow params and metrics use."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, path) if isinstance(value, dict) else {path: value})
    return out


@contextlib.contextmanager
def stage_run(root: Path, params: config.Params, stage_name: str) -> Iterator[str]:
    """An MLflow run for one stage, with its params sections and lineage tags; yields the run id."""
    sections = stage(stage_name).params
    dumped = params.model_dump(mode="json")
    tags = {
        Tag.STAGE: stage_name,
        Tag.GIT_COMMIT: lineage.git_commit(root),
        Tag.GIT_DIRTY: str(lineage.git_dirty(root)).lower(),
        Tag.PARAMS_HASH: params.section_hash(*sections),
    }
    if os.environ.get(PIPELINE_RUN_ENV):
        tags[Tag.PIPELINE_RUN] = os.environ[PIPELINE_RUN_ENV]
    exp = experiment_id(root, params.tracking.experiment)
    with mlflow.start_run(experiment_id=exp, run_name=stage_name, tags=tags) as run:
        mlflow.log_params(flatten({k: dumped[k] for k in sections}))
        yield run.info.run_id


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_dataset(root: Path, split, context: str) -> None:
    """Record the training data as an MLflow dataset input, named by its manifest hash."""
    from steps.hashing import sha256
    from steps.pipeline import MANIFEST

    digest = sha256(Path(root) / MANIFEST)[:16]
    dataset = mlflow.data.from_numpy(split.x[:1].numpy(), targets=split.y[:1].numpy(),
                                     name=f"fashion-mnist-{digest}", digest=digest)
    mlflow.log_input(dataset, context=context)


def log_model_files(root: Path, role) -> None:
    """The safetensors weights and JSON spec, as plain artifacts of the current run."""
    for rel in model_files(role):
        mlflow.log_artifact(str(Path(root) / rel), artifact_path="model_files")


def log_table(frame, artifact_file: str) -> None:
    mlflow.log_table(data=frame, artifact_file=artifact_file)


def log_figure(figure, artifact_file: str) -> None:
    mlflow.log_figure(figure, artifact_file)


def log_dict(data: dict, artifact_file: str) -> None:
    mlflow.log_dict(data, artifact_file)


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


# --- registry -------------------------------------------------------------------------------------------------------

PIP_REQUIREMENTS = [f"torch=={version('torch').split('+')[0]}", f"mlflow=={version('mlflow')}"]


def log_registered_model(model, example, model_name: str) -> int:
    """Log `model` (torch.export, no pickle) in the active run and register it; returns the version.

    `example` must have batch size >= 2: MLflow exports the batch dimension as
    dynamic only when the example does not pin it to 1.
    """
    model.eval()
    info = mlflow.pytorch.log_model(model, name="model", input_example=example,
                                    pip_requirements=PIP_REQUIREMENTS, registered_model_name=model_name)
    return int(info.registered_model_version)


DEPLOY_ARTIFACTS = "deploy"
"""Artifact folder of the registering run that holds the deployable ONNX files."""


def log_deployable(root: Path, model_name: str, version: int, files: list[Path], deployable: Path) -> dict[str, str]:
    """Log the ONNX `files` into the active run (beside the registered model) and tag `version` with their sha256.

    Returns the tags: `shrinkflow.onnx_sha256.<file name>` per file and
    `shrinkflow.deployable` naming the one to deploy. `shrinkflow export`
    and audits re-check the files against these hashes.
    """
    from steps.hashing import sha256

    tags = {Tag.DEPLOYABLE.value: Path(deployable).name}
    for path in files:
        mlflow.log_artifact(str(Path(root) / path), artifact_path=DEPLOY_ARTIFACTS)
        tags[f"{Tag.ONNX_SHA256}.{Path(path).name}"] = sha256(Path(root) / path)
    tag_version(model_name, version, tags)
    return tags


def resolve_version(model_name: str, alias: str | None = None, version: int | None = None):
    """The ModelVersion named by alias or number; MlflowException when there is none."""
    client = MlflowClient()
    if alias is not None:
        return client.get_model_version_by_alias(model_name, alias)
    return client.get_model_version(model_name, str(version))


def download_deployable(mv, dest: Path) -> dict[str, str]:
    """Download the ONNX files logged with model version `mv` into `dest`, each checked against its sha256 tag.

    Returns {file name: sha256}; ValueError when the version has none, or a
    downloaded file's hash differs from the one recorded at registration.
    """
    import tempfile

    from steps.hashing import sha256

    prefix = f"{Tag.ONNX_SHA256}."
    expected = {k.removeprefix(prefix): v for k, v in mv.tags.items() if k.startswith(prefix)}
    if not expected:
        raise ValueError(f"{mv.name} version {mv.version} has no ONNX files (registered before the export stage?)")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shrinkflow-export-") as scratch:
        local = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=DEPLOY_ARTIFACTS,
                                                         dst_path=scratch))
        for name, digest in expected.items():
            got = sha256(local / name) if (local / name).is_file() else "missing"
            if got != digest:
                raise ValueError(f"{mv.name} version {mv.version}: {DEPLOY_ARTIFACTS}/{name} has sha256 {got}, "
                                 f"but {digest} was recorded at registration")
        for name in expected:
            shutil.move(local / name, dest / name)
    return expected


def alias_version(model_name: str, alias: str):
    """The ModelVersion behind `alias`, or None when the model or alias does not exist yet."""
    client = MlflowClient()
    try:
        aliases = client.get_registered_model(model_name).aliases
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if alias not in aliases:
        return None
    return client.get_model_version(model_name, str(aliases[alias]))


def set_alias(model_name: str, alias: str, version: int) -> None:
    MlflowClient().set_registered_model_alias(model_name, alias, str(version))


def tag_version(model_name: str, version: int, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, str(value))


def version_exists(root: Path, model_name: str, version: int) -> bool:
    use_store(root)
    try:
        MlflowClient().get_model_version(model_name, str(version))
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return False
        raise
    return True


def run_metrics(run_id: str) -> dict[str, float]:
    return dict(MlflowClient().get_run(run_id).data.metrics)


# --- sweeps: a parent run, one nested run per member -----------------------------------------------------------------
# These runs are made through the client, not `mlflow.start_run`: a stage opens its own (fluent) run in the same
# thread while a sweep or member run is open, and MLflow allows one active fluent run per thread.

PARENT_RUN_TAG = "mlflow.parentRunId"
"""MLflow's own nesting tag: the UI shows a run with it under its parent."""


def record_into(uri: str) -> None:
    """Send every run of this process to `uri`, whatever root a stage is given: a sweep member works in
    its own directory (a Dask worker, maybe on another machine) but records into the project's store."""
    global USER_TRACKING_URI
    USER_TRACKING_URI = uri


@contextlib.contextmanager
def _client_run(root: Path, params: config.Params, run_name: str, tags: dict[str, str]) -> Iterator[str]:
    exp = experiment_id(root, params.tracking.experiment)
    client = MlflowClient()
    tags = {Tag.GIT_COMMIT: lineage.git_commit(root), Tag.GIT_DIRTY: str(lineage.git_dirty(root)).lower(), **tags}
    run_id = client.create_run(exp, run_name=run_name, tags=tags).info.run_id
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


@contextlib.contextmanager
def sweep_run(root: Path, params: config.Params, grid: dict, run_name: str) -> Iterator[str]:
    """The parent run of a sweep, holding its grid; yields the run id."""
    with _client_run(root, params, run_name, {Tag.SWEEP: "parent"}) as run_id:
        client = MlflowClient()
        client.log_dict(run_id, grid, "sweep/grid.json")
        for key, values in grid.items():
            client.log_param(run_id, f"grid.{key}", ",".join(map(str, values)))
        yield run_id


@contextlib.contextmanager
def member_run(root: Path, params: config.Params, parent_run_id: str, name: str, overrides: dict) -> Iterator[str]:
    """A sweep member's run, nested under the sweep's parent run, with its overrides as params."""
    label = ", ".join(f"{k}={v}" for k, v in overrides.items())
    tags = {PARENT_RUN_TAG: parent_run_id, Tag.SWEEP: name, Tag.SWEEP_LABEL: label}
    with _client_run(root, params, f"{name}: {label}", tags) as run_id:
        client = MlflowClient()
        for key, value in overrides.items():
            client.log_param(run_id, key, value)
        yield run_id


def adopt_runs(parent_run_id: str, run_ids: list[str]) -> None:
    """Nest runs that were opened on their own (a member's stage runs) under `parent_run_id`."""
    client = MlflowClient()
    for run_id in run_ids:
        client.set_tag(run_id, PARENT_RUN_TAG, parent_run_id)


def log_run_metrics(run_id: str, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric
    from mlflow.utils.time import get_current_time_millis

    now = get_current_time_millis()
    MlflowClient().log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


def log_run_table(run_id: str, frame, artifact_file: str) -> None:
    MlflowClient().log_table(run_id, data=frame, artifact_file=artifact_file)


def log_run_figure(run_id: str, figure, artifact_file: str) -> None:
    MlflowClient().log_figure(run_id, figure, artifact_file)


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def sweep_member_runs(root: Path, experiment: str, parent_run_id: str) -> list:
    """The member runs of a sweep (for reports and tests), in name order."""
    exp = experiment_id(root, experiment)
    runs = MlflowClient().search_runs([exp], filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}'")
    return sorted(runs, key=lambda r: r.data.tags.get(Tag.SWEEP, ""))


def delete_alias(model_name: str, alias: str) -> None:
    MlflowClient().delete_registered_model_alias(model_name, alias)


def aliases(model_name: str) -> dict[str, int]:
    """{alias: version} of a registered model; {} when it does not exist yet."""
    try:
        found = MlflowClient().get_registered_model(model_name).aliases
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    return {alias: int(v) for alias, v in found.items()}


def model_version(model_name: str, version: int):
    """The ModelVersion (tags, run id, source); MlflowException naming it when absent."""
    return MlflowClient().get_model_version(model_name, str(version))


def download_artifacts(uri: str, dest: Path) -> Path:
    """Download `uri` (models:/..., runs:/...) into `dest`; returns the local path."""
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))


def run_artifact_uri(run_id: str, path: str) -> str:
    return f"runs:/{run_id}/{path}"


def run_record(run_id: str):
    """The MLflow Run (params, metrics, tags)."""
    return MlflowClient().get_run(run_id)


# --- the registry lock (server profile) and the promotion history -----------------------------------------------


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
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def delete_registered_model(name: str) -> None:
    """Delete `name`; a model already gone is fine (someone else released or broke the lock)."""
    try:
        MlflowClient().delete_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def record_event(experiment: str, run_name: str, tags: dict[str, str], metrics: dict[str, float],
                 document: dict) -> str:
    """One finished MLflow run holding one history event; independent of any active run."""
    from mlflow.entities import Metric

    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else _create_experiment(experiment)
    run = client.create_run(exp_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
    now = run.info.start_time
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    client.log_dict(run.info.run_id, document, "event.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _create_experiment(name: str) -> str:
    # Same rule as experiment_id(): on the local store artifacts stay inside the project (next to mlflow.db).
    location = None
    uri = mlflow.get_tracking_uri()
    if not USER_TRACKING_URI and uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently by another process
        return mlflow.get_experiment_by_name(name).experiment_id


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


def file_store_path() -> Path | None:
    """The SQLite file behind the current tracking URI, or None for a server."""
    uri = mlflow.get_tracking_uri()
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def record_audit(experiment: str, run_name: str, tags: dict[str, str], files: list[Path]) -> str:
    """One finished MLflow run holding an audit's report files."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else _create_experiment(experiment)
    run = client.create_run(exp_id, run_name=run_name, tags=tags)
    for path in files:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id, status="FINISHED" if tags.get("shrinkflow.audit.verdict") == "pass"
                          else "FAILED")
    return run.info.run_id
