"""What a run records about where it came from: code (git), params (hash of the sections it read), pipeline run."""

from __future__ import annotations

import os
from pathlib import Path

from steps.core import git
from steps.core.dag import stage
from steps.core.names import Tag

PIPELINE_RUN_ENV = "SHRINKFLOW_PIPELINE_RUN"
"""Set by the Prefect flow so every stage's MLflow run names the flow run that made it."""
PARENT_RUN_ENV = "SHRINKFLOW_PARENT_RUN"
"""Set by the Prefect flow: the MLflow run of the whole pipeline run, which every stage run is nested under."""


def code_tags(root: Path) -> dict[str, str]:
    return {Tag.GIT_COMMIT: git.git_commit(root), Tag.GIT_DIRTY: str(git.git_dirty(root)).lower()}


def stage_run(root: Path, params, stage_name: str) -> dict:
    """The arguments of `tracking.open_run` for one stage: its name, the params sections it reads, lineage tags."""
    sections = stage(stage_name).params
    dumped = params.model_dump(mode="json")
    tags = {Tag.STAGE: stage_name, **code_tags(root), Tag.PARAMS_HASH: params.section_hash(*sections)}
    if os.environ.get(PIPELINE_RUN_ENV):
        tags[Tag.PIPELINE_RUN] = os.environ[PIPELINE_RUN_ENV]
    if os.environ.get(PARENT_RUN_ENV):
        tags[Tag.MLFLOW_PARENT_RUN] = os.environ[PARENT_RUN_ENV]
    return {"experiment": params.tracking.experiment, "name": stage_name,
            "params": {k: dumped[k] for k in sections}, "tags": tags}
