"""A training stage on several ranks (resources.processes > 1): one MLflow run, opened by rank 0 alone.

With one process (the default) rank 0 is the process, and this is `tracking.open_run` as every stage opened it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from steps import config, tracking
from steps.compression import accelerator, parallel
from steps.core import lineage


@contextlib.contextmanager
def stage_run(root: Path, params: config.Params, stage: str, origin: lineage.Origin,
              device: torch.device | None = None) -> Iterator[str]:
    """The stage's MLflow run on rank 0 (its id); "" on the other ranks, which log nothing. Trained on a CUDA
    `device`, the run is tagged with the GPU, CUDA, cuDNN's settings and the precision (accelerator.record)."""
    if not parallel.is_main():
        yield ""
        return
    with tracking.open_run(root, **lineage.stage_run(root, params, stage, origin)) as run_id:
        if device is not None and accelerator.is_cuda(device):
            tracking.set_tags(accelerator.record(device, params.resources.precision))
        yield run_id
