"""`shrinkflow serve-model NAME[@ALIAS]`: MLflow's scoring server for a registered version, from the project's venv.

It runs `mlflow models serve -m models:/NAME@ALIAS --env-manager local` against the project's tracking store,
with this environment's bin/ first on PATH: MLflow starts its web server (uvicorn) by name, so from a venv
that is not activated it fails with exit 127. The served model takes raw inputs (docs/deployables.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows import runtime
from flows.cli.console import RootOption, console, fail


def model_uri(model: str) -> str:
    """models:/NAME@ALIAS from NAME (its @champion), NAME@ALIAS, NAME/VERSION or a models:/ URI."""
    if model.startswith("models:/"):
        return model
    return f"models:/{model}" if "@" in model or "/" in model else f"models:/{model}@champion"


def serve_model(
    model: Annotated[str, typer.Argument(help="NAME (its @champion), NAME@ALIAS, NAME/VERSION or a models:/ URI")],
    port: Annotated[int, typer.Option(help="port to listen on")] = 5001,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, help="server worker processes")] = 1,
    root: RootOption = Path("."),
) -> None:
    """Serve a registered model over HTTP (POST /invocations with raw inputs; GET /ping) until stopped."""
    from steps import tracking

    root = root.resolve()
    uri = model_uri(model)
    try:
        ref = tracking.ModelRef.parse(uri)
    except ValueError as err:
        fail(str(err))
    runtime.prepare(root)
    tracking.use_store(root)
    try:
        version = ref.resolve()
    except tracking.UnknownModel as err:
        fail(str(err))
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.tracking_uri(root),
           "MLFLOW_REGISTRY_URI": tracking.tracking_uri(root), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    console.print(f"serving {uri} (version {version}) on http://{host}:{port}/invocations", highlight=False)
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
               "--host", host, "--port", str(port), "--workers", str(workers)]
    os.execve(sys.executable, command, env)  # the server replaces this process: signals reach it directly
