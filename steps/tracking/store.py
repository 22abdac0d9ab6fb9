"""Which MLflow store a process records into, and whether it answers.

Local profile: `sqlite:///<root>/mlflow.db` with artifacts in `<root>/mlartifacts`
(`mlflow ui --backend-store-uri sqlite:///mlflow.db` at the project root shows them; its "Model training" view,
`?workflowType=machine_learning`, lists the runs).
`MLFLOW_TRACKING_URI` in the environment selects a server instead (the services profiles):
a server that does not answer fails with `TrackingUnavailable`, naming its URI.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from steps.core import environment

environment.apply_defaults()  # MLflow reads its settings at import time

import mlflow  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from steps.core.profiles import redact  # noqa: E402
from steps.tracking.localstore import check_store, local_uri  # noqa: E402

warnings.filterwarnings("ignore", message=".*noload.*")  # MLflow's own SQLAlchemy usage
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

# The user's choice, read once: mlflow.set_tracking_uri() writes MLFLOW_TRACKING_URI into the
# environment itself, so reading it later would mistake our own local store for a server.
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")
ARTIFACTS_DIR = "mlartifacts"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
"""MLflow 3's experiment kind for model training (runs, metrics, models), the value its UI's kind selector writes;
the other kind is "genai_development" (traces, sessions, evaluations). MLflow 3.17.2's own UI picks the view from
its "GenAI | Model training" switch (default GenAI, remembered by the browser; `?workflowType=machine_learning` in
the URL), not from this tag: seen in a browser, docs/pipeline.md says how to open the runs."""
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST",)


class TrackingUnavailable(ConnectionError):
    """The MLflow tracking server did not answer; the message names its URI (never its credentials)."""


def is_missing(err: MlflowException, codes: tuple[str, ...] = NOT_FOUND) -> bool:
    """The one not-found test: MLflow answers a missing model, alias or version with these error codes."""
    return err.error_code in codes


def _unreachable(err: MlflowException) -> BaseException | None:
    """The network error behind an MLflow request failure (MLflow re-raises it as a bare
    MlflowException, so it is only reachable as the implicit context), or None."""
    import requests

    cause = err.__cause__ or err.__context__
    return cause if isinstance(cause, (requests.ConnectionError, requests.Timeout)) else None


def _server_error(uri: str, cause: BaseException) -> TrackingUnavailable:
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
    return USER_TRACKING_URI or local_uri(root)


def use_store(root: Path) -> None:
    """Point MLflow at the project's store; a damaged local `mlflow.db` is refused by name before MLflow opens it
    (MLflow would fail later with a raw SQL error)."""
    uri = tracking_uri(root)
    if uri.startswith("sqlite:///"):
        check_store(Path(uri.removeprefix("sqlite:///")))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def record_into(uri: str) -> None:
    """Send every run of this process to `uri`, whatever root a stage is given: a sweep member works in
    its own directory (a Dask worker, maybe on another machine) but records into the project's store."""
    global USER_TRACKING_URI
    USER_TRACKING_URI = uri


def user_uri() -> str | None:
    """The store the user chose (MLFLOW_TRACKING_URI when this process started, or `record_into`'s), None for the
    project's local store. Not os.environ's MLFLOW_TRACKING_URI: mlflow.set_tracking_uri writes our own local
    store there, and a child process reading it would record into the store of whichever project came last."""
    return USER_TRACKING_URI


def file_store_path() -> Path | None:
    """The SQLite file behind the current tracking URI, or None for a server."""
    uri = mlflow.get_tracking_uri()
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def experiment_id(name: str) -> str:
    """The id of experiment `name` in the current store; created when missing, with its artifacts inside the
    project on the local store (a server decides where its artifacts go), as a model-training experiment."""
    try:
        found = mlflow.get_experiment_by_name(name)
    except MlflowException as err:  # the first request of every stage: say which server did not answer
        cause = _unreachable(err)
        if cause is None:
            raise
        raise _server_error(mlflow.get_tracking_uri(), cause) from err
    if found is not None:
        if EXPERIMENT_KIND_TAG not in found.tags:  # created before shrinkflow set a kind; one set by a person stays
            MlflowClient().set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return found.experiment_id
    db = None if USER_TRACKING_URI else file_store_path()
    location = (db.parent / ARTIFACTS_DIR).as_uri() if db is not None else None
    try:
        return mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
    except MlflowException:  # created concurrently by another process
        return mlflow.get_experiment_by_name(name).experiment_id
