"""`shrinkflow serve`: the scheduled retrain-and-compress job.

Serves the main flow as a Prefect deployment with the cron schedule and time
zone of params.yaml's `schedule` section (`flow.serve`: this process polls the
Prefect server and runs each due flow run in a subprocess). prefect.yaml at the
repository root deploys the same flow to a work pool instead, for workers.

A scheduled run is the ordinary pipeline: the data stage's cache key is the
content of the raw data, so new data retrains everything downstream and goes
through the promotion gates; unchanged data and params are all `Cached` and
register nothing. A gate that says no completes the run with 'not promoted:
<gate>'; a crash fails it before any alias moves.

Schedules need a real Prefect server (`prefect server start`, PREFECT_API_URL):
the ephemeral one Prefect starts on its own runs no scheduler.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from flows import runtime
from flows.console import RootOption, console, fail

SERVE_LIMIT = 1
"""One run at a time: runs share one checkout, and DVC holds a repository lock while it records a stage."""


def schedule_for(cfg, interval_s: float | None):
    """A Prefect schedule: the params' cron in its time zone, or a fixed interval (demos and tests)."""
    from prefect.schedules import Cron, Interval

    if interval_s is not None:
        return Interval(interval_s, timezone=cfg.timezone)
    return Cron(cfg.cron, timezone=cfg.timezone)


def serve(
    root: RootOption = Path("."),
    interval: Annotated[float | None, typer.Option(
        min=1, help="run every N seconds instead of the cron in params.yaml (demos, tests)")] = None,
) -> None:
    """Serve the pipeline on its schedule (params.yaml `schedule`) until stopped (Ctrl-C)."""
    from steps import config

    root = root.resolve()
    try:
        params = config.load(root)
    except config.ConfigError as err:
        fail(str(err))
    if not os.environ.get("PREFECT_API_URL"):
        fail("shrinkflow serve needs a Prefect server with a scheduler: run `prefect server start` and set "
             "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api); Prefect's ephemeral server schedules nothing")
    runtime.prepare(root)
    from prefect.deployments.runner import EntrypointType

    from flows.compress import compress

    cfg = params.schedule
    when = f"every {interval:g} s" if interval is not None else f"cron '{cfg.cron}' ({cfg.timezone})"
    console.print(f"serving deployment compress/{cfg.deployment} for {root}: {when}", highlight=False)
    compress.serve(
        name=cfg.deployment,
        schedules=[schedule_for(cfg, interval)],
        parameters={"root": str(root)},
        tags=["shrinkflow", "scheduled"],
        limit=SERVE_LIMIT,
        # The module path, not a file path: the runner's subprocess then finds the flow from any directory.
        entrypoint_type=EntrypointType.MODULE_PATH,
        print_starting_message=False,
    )
