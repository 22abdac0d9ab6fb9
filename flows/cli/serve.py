"""`shrinkflow serve`: the scheduled retrain-and-compress job (see flows/deployments.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from flows import runtime
from flows.cli.console import RootOption, console, fail


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
    from flows.deployments import serve_flow

    cfg = params.schedule
    when = f"every {interval:g} s" if interval is not None else f"cron '{cfg.cron}' ({cfg.timezone})"
    console.print(f"serving deployment compress/{cfg.deployment} for {root}: {when}", highlight=False)
    serve_flow(root, cfg, interval)
