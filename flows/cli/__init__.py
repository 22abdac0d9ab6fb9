"""`shrinkflow`: the command line (typer + rich), one module per command group."""

from __future__ import annotations

import typer

from flows.cli import audit, doctor, export, predict, registry, run, serve, serve_model, sweep

app = typer.Typer(help="Train, prune, distill, evaluate and promote a model, reproducibly.", no_args_is_help=True)
app.command()(run.run)
app.command()(run.report)
app.command()(run.repro)
app.command("dvc-yaml")(run.dvc_yaml)
app.command()(doctor.doctor)
app.command()(sweep.sweep)
app.command()(serve.serve)
app.command()(registry.promote)
app.command()(audit.audit)
app.command("export")(export.export)
app.command("serve-model")(serve_model.serve_model)
app.command("predict")(predict.predict)
app.add_typer(registry.app, name="registry")
