"""What a run records about where it came from: code (git), params (hash of the sections it read), pipeline run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from steps.core import git
from steps.core.dag import stage
from steps.core.names import Tag


@dataclass(frozen=True)
class Origin:
    """Who started a stage, passed to its `run()` by the orchestrator that did (flows/compress.py).

    Empty for a stage run on its own (`python -m steps.<stage>`, as `dvc repro` runs it, or a test), which has
    no pipeline run to name: its MLflow run then stands alone, and promote names this process as the actor.
    """

    pipeline_run: str = ""
    """The Prefect flow run that ran the stage."""
    parent_run: str = ""
    """The MLflow run of that pipeline run, which the stage's run is nested under."""
    trigger: str = ""
    """What started the pipeline (a schedule, a direct call), for the promotion history."""


STANDALONE = Origin()


def code_tags(root: Path) -> dict[str, str]:
    return {Tag.GIT_COMMIT: git.git_commit(root), Tag.GIT_DIRTY: str(git.git_dirty(root)).lower()}


def stage_run(root: Path, params, stage_name: str, origin: Origin = STANDALONE) -> dict:
    """The arguments of `tracking.open_run` for one stage: its name, the params sections it reads, lineage tags."""
    sections = stage(stage_name).params
    dumped = params.model_dump(mode="json")
    tags = {Tag.STAGE: stage_name, **code_tags(root), Tag.PARAMS_HASH: params.section_hash(*sections)}
    if origin.pipeline_run:
        tags[Tag.PIPELINE_RUN] = origin.pipeline_run
    if origin.parent_run:
        tags[Tag.MLFLOW_PARENT_RUN] = origin.parent_run
    return {"experiment": params.tracking.experiment, "name": stage_name,
            "params": {k: dumped[k] for k in sections}, "tags": tags}
