"""The end every model-training stage shares: save the model, log its final metrics and files, write the result.

One helper so the stages cannot drift apart in what they record (teacher, prune, distill each ended with
the same five lines). Under torchrun (resources.processes > 1) rank 0 alone saves, logs and writes; the others
wait for it at write_result's barrier, so no rank exits while the stage's files are being written.
"""

from __future__ import annotations

from pathlib import Path

from steps import tracking
from steps.compression import parallel
from steps.core.layout import metrics_path
from steps.core.names import Artifact, ModelRole
from steps.core.results import StageResult
from steps.core.torchkit import save_model


def save_and_record(root: Path, stage: str, role: ModelRole, model, spec, meta: dict,
                    metrics: dict[str, float] | None = None) -> None:
    """Inside the stage's MLflow run: the checkpoint of `role` saved (with `meta`), `metrics` logged, and the
    checkpoint's files logged as the run's model files. Nothing on a rank other than 0."""
    if not parallel.is_main():
        return
    written = save_model(root, role, model, spec, {"stage": stage, **meta})
    if metrics:
        tracking.log_metrics(metrics)
    tracking.log_files(written, Artifact.MODEL_FILES)  # a folder's files (hf) side by side, as a file and its spec


def write_result(root: Path, stage: str, result: StageResult) -> StageResult:
    """`result` written to metrics/<stage>.json (after the run closed, so a crash leaves no result), by rank 0;
    every rank returns once it is written."""
    if parallel.is_main():
        result.write(root / metrics_path(stage))
    parallel.barrier()
    return result
