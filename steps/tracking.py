"""The one module that talks to MLflow: runs, metrics, artifacts and the registry.

Local profile: `sqlite:///<root>/mlflow.db` with artifacts in `<root>/mlartifacts`
(`mlflow ui --backend-store-uri sqlite:///mlflow.db` at the project root shows
them). `MLFLOW_TRACKING_URI` in the environment selects a server instead.
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


def tracking_uri(root: Path) -> str:
    return USER_TRACKING_URI or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def use_store(root: Path) -> None:
    mlflow.set_tracking_uri(tracking_uri(root))
    mlflow.set_registry_uri(tracking_uri(root))


def experiment_id(root: Path, name: str) -> str:
    """The experiment's id; created with an explicit artifact location on the local store."""
    use_store(root)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    # A server decides where artifacts go; the local store keeps them inside the project.
    location = None if USER_TRACKING_URI else (Path(root).resolve() / "mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently by another process
        return mlflow.get_experiment_by_name(name).experiment_id


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value
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
        mlflow.log_params(_flatten("", {k: dumped[k] for k in sections}, {}))
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
