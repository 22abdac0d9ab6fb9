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
    DEPLOYABLE = "shrinkflow.deployable"
    """File name of the deployable ONNX artifact among those logged with the version."""
    ONNX_SHA256 = "shrinkflow.onnx_sha256"
    """Prefix: `shrinkflow.onnx_sha256.<file name>` holds that ONNX artifact's sha256."""


class ModelRole(StrEnum):
    """The three models every run produces and the evaluate step compares."""

    TEACHER = "teacher"
    PRUNED = "pruned"
    STUDENT = "student"
