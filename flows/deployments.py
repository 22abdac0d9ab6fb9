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

from pathlib import Path

SERVE_LIMIT = 1
"""One run at a time: runs share one checkout, and DVC holds a repository lock while it records a stage."""


def schedule_for(cfg, interval_s: float | None):
    """A Prefect schedule: the params' cron in its time zone, or a fixed interval (demos and tests)."""
    from prefect.schedules import Cron, Interval

    if interval_s is not None:
        return Interval(interval_s, timezone=cfg.timezone)
    return Cron(cfg.cron, timezone=cfg.timezone)


def serve_flow(root: Path, cfg, interval_s: float | None) -> None:
    """Serve the main flow as deployment `cfg.deployment` on its schedule until stopped (blocks)."""
    from prefect.deployments.runner import EntrypointType

    from flows.compress import compress

    compress.serve(
        name=cfg.deployment,
        schedules=[schedule_for(cfg, interval_s)],
        parameters={"root": str(root)},
        tags=["shrinkflow", "scheduled"],
        limit=SERVE_LIMIT,
        # The module path, not a file path: the runner's subprocess then finds the flow from any directory.
        entrypoint_type=EntrypointType.MODULE_PATH,
        print_starting_message=False,
    )
