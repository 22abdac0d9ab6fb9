"""Names shared by steps, flows and tests: MLflow tags, aliases, metric keys."""

from enum import StrEnum


class Alias(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"


class Tag(StrEnum):
    """Tags on MLflow runs and registered model versions (lineage for audits)."""

    STAGE = "shrinkflow.stage"
    PIPELINE_RUN = "shrinkflow.pipeline_run"
    GIT_COMMIT = "shrinkflow.git_commit"
    GIT_DIRTY = "shrinkflow.git_dirty"
    DATA_HASH = "shrinkflow.data_hash"
    PARAMS_HASH = "shrinkflow.params_hash"
    MODEL_SHA256 = "shrinkflow.model_sha256"
    DECISION = "shrinkflow.decision"
    REASON = "shrinkflow.reason"
    SWEEP = "shrinkflow.sweep"  # "parent" or the member's name
    SWEEP_LABEL = "shrinkflow.sweep_label"  # a member's overrides, e.g. "prune.target_sparsity=0.5"
    TEACHER_RUN = "shrinkflow.teacher_run"  # on a sweep's parent run: the shared teacher's run
    FRONTIER = "shrinkflow.frontier"  # on a sweep member's run: which of its models are Pareto-optimal


class ModelRole(StrEnum):
    """The three models every run produces and the evaluate step compares."""

    TEACHER = "teacher"
    PRUNED = "pruned"
    STUDENT = "student"
