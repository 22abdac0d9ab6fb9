"""A training stage on several ranks (resources.processes > 1): started under torchrun, one MLflow run, opened by
rank 0 alone, and ended FAILED by the launching process when the ranks were stopped before rank 0 could end it.

With one process (the default) rank 0 is the process, and this is `tracking.open_run` as every stage opened it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import torch

from steps import config, tracking
from steps.compression import accelerator, parallel
from steps.compression.training import resolve_device
from steps.core import launch, lineage

logger = logging.getLogger(__name__)
Result = TypeVar("Result")


def on_ranks(stage: str, params: config.Params, root: Path, origin: lineage.Origin, result_type: type[Result],
             train: Callable[[config.Params, Path, lineage.Origin], Result]) -> Result:
    """`train(params, root, origin)` as the stage's run(): restarted under torchrun when more processes are asked
    for and this is no rank yet (launched); else in the ranks' process group, each rank bound to its own GPU when
    the device is CUDA (nothing at all for one process)."""
    if launch.needed(params.resources):
        return launched(stage, params, root, origin, result_type)
    with parallel.process_group(params.resources.backend, resolve_device(params.device)):
        return train(params, root, origin)


def launched(stage: str, params: config.Params, root: Path, origin: lineage.Origin, result_type: type[Result]
             ) -> Result:
    """The stage on resources.processes ranks under torchrun (launch.torchrun), rank 0's result. When a rank fails,
    torchrun stops the others by signal, so rank 0's MLflow run would stay RUNNING forever: it is ended FAILED here
    (the run rank 0 recorded, stage_run) before RankFailed goes on."""
    try:
        return launch.torchrun(stage, params, root, origin, result_type, tracking_uri=tracking.user_uri())
    except launch.RankFailed as failed:
        if failed.run_id:
            _end_failed(root, failed)
        raise


def _end_failed(root: Path, failed: Exception) -> None:
    """Rank 0's run ended FAILED; a store that cannot be reached (perhaps why the rank died) is warned about, and
    the rank's failure, not this one, is what the stage raises."""
    try:
        tracking.use_store(root)
        tracking.fail_if_running(failed.run_id)
    except Exception as err:  # noqa: BLE001 - any store fault: the rank's failure is the one to report
        logger.warning("could not mark MLflow run %s FAILED after %s: %s", failed.run_id, failed, err)


@contextlib.contextmanager
def stage_run(root: Path, params: config.Params, stage: str, origin: lineage.Origin,
              device: torch.device | None = None) -> Iterator[str]:
    """The stage's MLflow run on rank 0 (its id); "" on the other ranks, which log nothing. Under launched() rank 0
    tells the launching process the id at once (launch.record_run_id). Trained on a CUDA `device`, the run is
    tagged with the GPU, CUDA, cuDNN's settings and the precision (accelerator.record)."""
    if not parallel.is_main():
        yield ""
        return
    with tracking.open_run(root, **lineage.stage_run(root, params, stage, origin),
                           on_open=launch.record_run_id) as run_id:
        if device is not None and accelerator.is_cuda(device):
            tracking.set_tags(accelerator.record(device, params.resources.precision))
        yield run_id
