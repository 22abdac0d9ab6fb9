"""Names shared by steps, flows and tests: MLflow tags, aliases, metric keys."""

from enum import StrEnum


class Alias(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"
    PREVIOUS = "previous"


class Tag(StrEnum):
    """Tags on MLflow runs and registered model versions (lineage for audits)."""

    MLFLOW_PARENT_RUN = "mlflow.parentRunId"
    """MLflow's own nesting tag: the UI shows a run with it under its parent."""
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
    DECIDED_AT = "shrinkflow.decided_at"
    TRIGGER = "shrinkflow.trigger"
    PROMOTE_RUN = "shrinkflow.promote_run"
    EVALUATE_RUN = "shrinkflow.evaluate_run"
    TEACHER_INIT = "shrinkflow.teacher_init"  # teacher.init.from: the model the teacher started from
    TEACHER_INIT_SHA256 = "shrinkflow.teacher_init_sha256"  # sha256 of that safetensors file
    TOKENIZER_SHA256 = "shrinkflow.tokenizer_sha256"  # text models: the data's tokenizer.json, served with the model
    ARTIFACTS_SHA256 = "shrinkflow.artifacts_sha256"
    """sha256 of the JSON {artifact path: sha256} logged as artifacts.json in the promote run."""
    LAST_AUDIT = "shrinkflow.last_audit"
    ACCURACY = "shrinkflow.accuracy"
    SERVED_ACCURACY = "shrinkflow.served_accuracy"  # the registered pyfunc on the raw test split
    PERPLEXITY = "shrinkflow.perplexity"  # causal_lm: the student's test perplexity (PyTorch, CPU), as evaluate measured
    GATE = "shrinkflow.gate"
    """Prefix: `shrinkflow.gate.<gate name>` holds that gate's verdict."""
    MOVES = "shrinkflow.moves"
    TIME = "shrinkflow.time"
    AUDIT_MODEL = "shrinkflow.audit.model"
    AUDIT_VERSION = "shrinkflow.audit.version"
    AUDIT_VERDICT = "shrinkflow.audit.verdict"
    # one promotion-history event (an MLflow run in steps.registry.history.HISTORY_EXPERIMENT)
    HISTORY_MODEL = "shrinkflow.history.model"
    HISTORY_SEQ = "shrinkflow.history.seq"
    HISTORY_PREV = "shrinkflow.history.prev"
    HISTORY_EVENT = "shrinkflow.history.event"
    HISTORY_VERSION = "shrinkflow.history.version"
    HISTORY_CHAMPION_BEFORE = "shrinkflow.history.champion_before"
    HISTORY_CHAMPION_AFTER = "shrinkflow.history.champion_after"
    DEPLOYABLE = "shrinkflow.deployable"
    """File name of the deployable ONNX artifact among those logged with the version."""
    ONNX_SHA256 = "shrinkflow.onnx_sha256"
    """Prefix: `shrinkflow.onnx_sha256.<file name>` holds that ONNX artifact's sha256."""
    TARGET = "shrinkflow.target"
    """Prefix: `shrinkflow.target.<limit>` holds the budget (params `target:`) the version was searched for."""
    REFERENCE_SHA256 = "shrinkflow.reference_sha256"
    """sha256 of the teacher's ONNX file logged with a budgeted version: what its latency was timed beside."""


STATISTIC_TAG = "shrinkflow.statistic"
"""Prefix: `shrinkflow.statistic.<name>` on a version and a history event holds one number of the paired test
(p_value, ci_low_pt, ..., worst_class); steps/registry/history.py writes them, the audit recomputes them."""


class Artifact(StrEnum):
    """Artifact folders of the run that registers a version (the audit and `shrinkflow export` read them)."""

    MODEL = "model"  # the registered MLflow model (torch.export), as downloaded from models:/NAME/VERSION
    MODEL_FILES = "model_files"  # the safetensors weights + JSON spec
    DEPLOY = "deploy"  # the deployable ONNX files (fp32, int8)
    REFERENCE = "reference"  # the teacher's ONNX file a budgeted version was timed beside (steps/core/latency.py)


class ModelRole(StrEnum):
    """The three models every run produces and the evaluate step compares."""

    TEACHER = "teacher"
    PRUNED = "pruned"
    STUDENT = "student"
