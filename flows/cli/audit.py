"""`shrinkflow audit`: re-prove a registered version, or say exactly what no longer matches."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows import runtime
from flows.cli.console import RootOption, console, fail


def audit(
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS")],
    retrain: Annotated[bool, typer.Option("--retrain", help="also rerun training at the recorded commit")] = False,
    latency_tolerance: Annotated[float, typer.Option(min=0, help="relative latency tolerance")] = 1.0,
    retrain_tolerance: Annotated[float, typer.Option(
        min=0, help="absolute accuracy tolerance for --retrain (a language model's next-token accuracy; its perplexity "
                    "is held to a fixed relative 0.001, its parameter counts exactly)")] = 0.01,
    root: RootOption = Path("."),
) -> None:
    """Re-prove a registered version: lineage, data by hash, params, artifact sha256, metrics (exit 1 on mismatch)."""
    from flows.cli.run import _lock_timeout
    from flows.runlock import EX_TEMPFAIL, RunLocked, project_lock
    from steps.registry import audit as audit_step
    from steps.registry.audit.report import save

    root = root.resolve()
    runtime.prepare(root)
    try:
        # Retraining runs the stages (in a worktree, from this checkout's git): one run per checkout at a time.
        with project_lock(root, _lock_timeout(root)) if retrain else contextlib.nullcontext():
            report = audit_step.run(root, model_uri, retrain, latency_tolerance, retrain_tolerance)
    except audit_step.AuditError as err:
        fail(str(err))
    except RunLocked as err:
        fail(str(err), code=EX_TEMPFAIL)
    table = Table(title=f"audit of {model_uri} (v{report.version})")
    for column in ("check", "verdict", "recorded", "observed", "detail"):
        table.add_column(column, overflow="fold")
    style = {"pass": "green", "FAIL": "bold red", "skipped": "yellow"}
    for c in report.checks:
        table.add_row(c.name, f"[{style[c.verdict]}]{c.verdict}[/]", c.recorded, c.observed, c.detail)
    console.print(table)
    json_path, md_path = save(root, report)
    console.print(f"report: {json_path} and {md_path.name} (also logged to MLflow)", highlight=False)
    if not report.passed:
        fail(f"audit failed: {', '.join(c.name for c in report.failures())}", code=1)
    console.print(f"audit passed: {len(report.checks)} checks", highlight=False)
