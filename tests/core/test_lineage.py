"""steps/core/lineage.py: a stage's MLflow run names the pipeline run and nests under its parent only when the
orchestrator passes them (lineage.Origin); nothing comes from the environment."""

from __future__ import annotations

from steps.core import lineage
from steps.core.names import Tag


def test_a_stage_run_names_its_pipeline_and_parent_only_when_given(stage_params, tmp_path, monkeypatch):
    # the variables the flow used to set: a stage must not read them any more (a leftover would mislabel runs)
    monkeypatch.setenv("SHRINKFLOW_PIPELINE_RUN", "stale-flow")
    monkeypatch.setenv("SHRINKFLOW_PARENT_RUN", "stale-parent")
    alone = lineage.stage_run(tmp_path, stage_params, "teacher")["tags"]
    assert Tag.PIPELINE_RUN not in alone and Tag.MLFLOW_PARENT_RUN not in alone
    origin = lineage.Origin(pipeline_run="flow-1", parent_run="run-1", trigger="a schedule")
    nested = lineage.stage_run(tmp_path, stage_params, "teacher", origin)["tags"]
    assert (nested[Tag.PIPELINE_RUN], nested[Tag.MLFLOW_PARENT_RUN]) == ("flow-1", "run-1")
    assert nested[Tag.STAGE] == "teacher"
