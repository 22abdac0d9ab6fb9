"""`shrinkflow registry history|rollback` and `shrinkflow promote --force`: the registry by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.console import RootOption, console, fail

app = typer.Typer(help="The model registry: promotion history and rollback.", no_args_is_help=True)


def _open_registry(root: Path) -> tuple[float, str]:
    """Load the steps' MLflow side against the project's store (or MLFLOW_TRACKING_URI); the lock timeout, and
    the trigger the history records for what this command does."""
    from steps import config, tracking
    from steps.registry import lock

    try:
        timeout = config.load(root).promote.lock_timeout_s
    except config.ConfigError:
        timeout = config.PromoteConfig.model_fields["lock_timeout_s"].default
    tracking.use_store(root)
    return timeout, f"shrinkflow CLI, {lock.this_process()}"


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="registered model name")],
    root: RootOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="print the events as JSON")] = False,
) -> None:
    """Print every promotion decision about NAME, oldest first."""
    from steps.registry import history as history_

    _open_registry(root.resolve())
    events = history_.events(name)
    if as_json:
        console.print_json(json.dumps(events))
        return
    if not events:
        fail(f"no promotion history for {name!r} in {_store(root)}", code=1)
    table = Table(title=f"promotion history of {name}")
    for column in ("#", "time (UTC)", "event", "version", "champion", "moves", "trigger", "reason"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(str(e["seq"]), e["time"], e["event"], f"v{e['version']}",
                      f"{e['champion_before']} -> {e['champion_after']}", e["moves"], e["trigger"], e["reason"])
    console.print(table)


def _store(root: Path) -> str:
    from steps import tracking

    return tracking.tracking_uri(root.resolve())


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="registered model name")],
    reason: Annotated[str, typer.Option(help="why; recorded in the history")] = "manual rollback",
    root: RootOption = Path("."),
) -> None:
    """Move @champion back to the version behind @previous, and record it."""
    from steps.registry import aliases, lock

    timeout, trigger = _open_registry(root.resolve())
    try:
        event = aliases.rollback(name, reason, timeout, trigger)
    except (aliases.RegistryError, lock.LockTimeout) as err:
        fail(str(err), code=1)
    console.print(f"rolled back {name}: @champion v{event.champion_before} -> v{event.champion_after}",
                  highlight=False)


def promote(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[int, typer.Argument(help="the version to make champion")],
    force: Annotated[bool, typer.Option("--force", help="skip the gates (a human override)")] = False,
    reason: Annotated[str, typer.Option(help="why; required with --force, recorded in the history")] = "",
    root: RootOption = Path("."),
) -> None:
    """Make VERSION the champion by hand (--force --reason "..."); the pipeline promotes through the gates."""
    from steps import tracking
    from steps.registry import aliases, lock

    if not force:
        fail("the pipeline promotes through the gates (shrinkflow run); a manual promotion needs --force and "
             "--reason \"...\"")
    if not reason.strip():
        fail("a forced promotion needs a reason: --reason \"...\" (it is recorded in the history)")
    timeout, trigger = _open_registry(root.resolve())
    try:
        event = aliases.force_promote(name, version, reason, timeout, trigger)
    except aliases.RegistryError as err:
        fail(str(err))
    except tracking.UnknownModel as err:
        fail(str(err), code=1)
    except lock.LockTimeout as err:
        fail(str(err), code=1)
    console.print(f"forced: {name} v{version} -> @champion (was v{event.champion_before}); reason: {reason}",
                  highlight=False)
