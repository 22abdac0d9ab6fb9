"""`shrinkflow registry history|rollback`, `shrinkflow promote --force` and `shrinkflow audit`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows import runtime
from flows.console import RootOption, console, fail

app = typer.Typer(help="The model registry: promotion history and rollback.", no_args_is_help=True)


def _open_registry(root: Path):
    """Load the steps' MLflow side against the project's store (or MLFLOW_TRACKING_URI) and a lock timeout."""
    from steps import config, tracking

    try:
        timeout = config.load(root).promote.lock_timeout_s
    except config.ConfigError:
        timeout = config.PromoteConfig.model_fields["lock_timeout_s"].default
    tracking.use_store(root)
    from steps import registry

    os.environ.setdefault(registry.TRIGGER_ENV, f"shrinkflow CLI, {registry.actor()}")
    return timeout


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="registered model name")],
    root: RootOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="print the events as JSON")] = False,
) -> None:
    """Print every promotion decision about NAME, oldest first."""
    from steps import registry

    _open_registry(root.resolve())
    events = registry.events(name)
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
    from steps import registry

    timeout = _open_registry(root.resolve())
    try:
        event = registry.rollback(name, reason, timeout)
    except (registry.RegistryError, registry.LockTimeout) as err:
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
    from mlflow.exceptions import MlflowException

    from steps import registry

    if not force:
        fail("the pipeline promotes through the gates (shrinkflow run); a manual promotion needs --force and "
             "--reason \"...\"")
    if not reason.strip():
        fail("a forced promotion needs a reason: --reason \"...\" (it is recorded in the history)")
    timeout = _open_registry(root.resolve())
    try:
        event = registry.force_promote(name, version, reason, timeout)
    except registry.RegistryError as err:
        fail(str(err))
    except MlflowException as err:
        fail(f"{name} v{version}: {err.message}", code=1)
    except registry.LockTimeout as err:
        fail(str(err), code=1)
    console.print(f"forced: {name} v{version} -> @champion (was v{event.champion_before}); reason: {reason}",
                  highlight=False)


def audit(
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS")],
    retrain: Annotated[bool, typer.Option("--retrain", help="also rerun training at the recorded commit")] = False,
    latency_tolerance: Annotated[float, typer.Option(min=0, help="relative latency tolerance")] = 1.0,
    retrain_tolerance: Annotated[float, typer.Option(min=0, help="absolute accuracy tolerance for --retrain")] = 0.01,
    root: RootOption = Path("."),
) -> None:
    """Re-prove a registered version: lineage, data by hash, params, artifact sha256, metrics (exit 1 on mismatch)."""
    from steps import audit as audit_step

    root = root.resolve()
    runtime.prepare(root)
    try:
        report = audit_step.run(root, model_uri, retrain, latency_tolerance, retrain_tolerance)
    except audit_step.AuditError as err:
        fail(str(err))
    table = Table(title=f"audit of {model_uri} (v{report.version})")
    for column in ("check", "verdict", "recorded", "observed", "detail"):
        table.add_column(column, overflow="fold")
    style = {"pass": "green", "FAIL": "bold red", "skipped": "yellow"}
    for c in report.checks:
        table.add_row(c.name, f"[{style[c.verdict]}]{c.verdict}[/]", c.recorded, c.observed, c.detail)
    console.print(table)
    json_path, md_path = audit_step.save(root, report)
    console.print(f"report: {json_path} and {md_path.name} (also logged to MLflow)", highlight=False)
    if not report.passed:
        fail(f"audit failed: {', '.join(c.name for c in report.failures())}", code=1)
    console.print(f"audit passed: {len(report.checks)} checks", highlight=False)
