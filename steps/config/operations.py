"""params.yaml's sections about running the pipeline, not about the model: schedule, run lock, tracking,
sweeps and storage."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from steps.config.base import Section as _Section


_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12),
                ("day-of-week", 0, 7))


def _cron_part_ok(part: str, low: int, high: int) -> bool:
    match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
    if match is None:
        return False
    numbers = [int(g) for g in match.groups()[1:3] if g is not None]
    step = match.group(4)
    return all(low <= n <= high for n in numbers) and (step is None or int(step) >= 1)


class ScheduleConfig(_Section):
    """When the deployment served by `shrinkflow serve` (and prefect.yaml) runs the pipeline."""

    cron: str = Field(default="0 3 * * *", description="five-field cron expression")
    timezone: str = Field(default="UTC", min_length=1, description="IANA name; cron times are read in it")
    deployment: str = Field(default="scheduled", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        # Checked here without importing Prefect's croniter (1 s of imports on every params load);
        # `shrinkflow serve` hands the string to Prefect's CronSchedule, which checks it again.
        fields = value.split()
        if len(fields) != 5:
            raise ValueError("expected five fields: minute hour day-of-month month day-of-week")
        for field, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True):
            for part in field.split(","):
                if not _cron_part_ok(part, low, high):
                    raise ValueError(f"{name} field {field!r}: expected *, N, N-M or */K with N, M in {low}..{high}")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone; use an IANA name such as UTC or Europe/Berlin") from None
        return value


class RunConfig(_Section):
    """The project run lock (flows/runlock.py): one run per checkout at a time."""

    lock_timeout_s: float = Field(default=60, ge=0, description="how long a run waits for the one holding the "
                                  "project lock before it refuses (exit 75: retry later)")


class TrackingConfig(_Section):
    experiment: str = Field(min_length=1)


SWEEPABLE_SECTIONS = ("prune", "distill")
"""What a sweep may vary: the sections of the stages each member runs. Data and teacher are shared by
all members (run once), and evaluation measures every member side by side with one setting."""


class SweepConfig(_Section):
    """A grid of param values; `shrinkflow sweep` trains one member per combination."""

    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="param path -> values, e.g. {prune.target_sparsity: [0.5, 0.9]}")
    scheduler_address: str | None = Field(
        default=None, min_length=1, description="an existing Dask scheduler (tcp://host:8786); None: a LocalCluster")
    workers: int | None = Field(default=None, ge=1, description="LocalCluster workers; None: CPU cores // threads")


class StorageConfig(_Section):
    """Pushing to the DVC remote: retried on connection errors only, with exponential back-off."""

    push_retries: int = Field(default=2, ge=0, le=10, description="retries after the first push attempt")
    retry_backoff_s: float = Field(default=1.0, ge=0, le=60, description="first retry delay; doubles each retry")
