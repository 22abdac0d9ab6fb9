"""What a person sees while a stage works: one line per epoch, round, candidate or timing, on one logger.

Plain log lines, not a bar, because they read the same in every place a stage runs: a terminal, DVC's
output (`python -m steps.<stage>`, whose `main()` sends them to stderr) and Prefect's logs (the flow
forwards them to the task's run logger). Where they go is the application's choice; this module only
writes them. Reporting reads numbers the caller already has: it never runs the model or draws from an
RNG, so a run with or without a reader gives the same models, byte for byte.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

LOGGER_NAME = "shrinkflow.progress"
logger = logging.getLogger(LOGGER_NAME)
# INFO even when the application configured nothing for it: Python's default (WARNING, from the root logger)
# would drop every line before a handler could see it.
logger.setLevel(logging.INFO)


def line(phase: str, step: str, values: Mapping[str, float | int | str], seconds: float) -> str:
    """'teacher: epoch 3/10, train_loss 0.4123, val_accuracy 0.8712, 9.1 s'."""
    shown = ", ".join(f"{name} {_number(value)}" for name, value in values.items())
    return f"{phase}: {step}{', ' + shown if shown else ''}, {seconds:.1f} s"


def report(phase: str, step: str, values: Mapping[str, float | int | str], seconds: float) -> None:
    logger.info(line(phase, step, values, seconds))


def since(began: float) -> float:
    """Seconds since `began`, a time.perf_counter() reading."""
    return time.perf_counter() - began


def _number(value: float | int | str) -> str:
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}"
