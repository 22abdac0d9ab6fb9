"""The invariant every fault test re-checks afterwards: no alias points at a version whose artifacts are
missing, and `@champion` / `previous` only ever point at versions that passed their gates."""

from __future__ import annotations

from pathlib import Path

import mlflow.artifacts
from mlflow.tracking import MlflowClient

from steps.core.names import Alias, Tag

PROMOTED_ALIASES = {Alias.CHAMPION.value, "previous"}


def local_uri(root: Path) -> str:
    return f"sqlite:///{Path(root) / 'mlflow.db'}"


def assert_registry_safe(tracking_uri: str, model_name: str = "fashion-student") -> int:
    """Check every aliased version of `model_name`; returns how many aliases were checked."""
    client = MlflowClient(tracking_uri, tracking_uri)
    checked = 0
    if not client.search_registered_models(f"name='{model_name}'"):
        return 0
    for alias, number in client.get_registered_model(model_name).aliases.items():
        version = client.get_model_version(model_name, number)
        files = {f.path.rsplit("/", 1)[-1] for f in mlflow.artifacts.list_artifacts(
            artifact_uri=client.get_model_version_download_uri(model_name, number), tracking_uri=tracking_uri)}
        assert "MLmodel" in files, f"@{alias} -> v{number} has no model artifacts: {files}"
        if alias in PROMOTED_ALIASES:
            assert version.tags.get(Tag.DECISION) == "promoted", f"@{alias} -> v{number}: {version.tags}"
            failed = [k for k, v in version.tags.items() if k.startswith("shrinkflow.gate.") and v.startswith("fail")]
            assert not failed, f"@{alias} -> v{number} failed gates {failed}"
        checked += 1
    return checked
