"""What a registered version is made of: the sha256 of every artifact, as the registry serves it now."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from steps import tracking
from steps.core.hashing import sha256
from steps.core.names import Artifact


def artifact_digests(model_name: str, version: int, run_id: str) -> dict[str, str]:
    """{artifact path: sha256} of the registered model and the registering run's model and deploy files."""
    with tempfile.TemporaryDirectory(prefix="shrinkflow-artifacts-") as tmp:
        places = {
            Artifact.MODEL.value: tracking.download_artifacts(f"models:/{model_name}/{version}", Path(tmp) / "m"),
            **{prefix.value: tracking.download_artifacts(tracking.run_artifact_uri(run_id, prefix), Path(tmp) / prefix)
               for prefix in (Artifact.MODEL_FILES, Artifact.DEPLOY)},
        }
        return {f"{prefix}/{p.relative_to(base).as_posix()}": sha256(p)
                for prefix, base in places.items() for p in sorted(base.rglob("*")) if p.is_file()}


def digest_of(digests: dict[str, str]) -> str:
    """One sha256 over the {path: sha256} record, for a version tag (so the record itself is checked too)."""
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
