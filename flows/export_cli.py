"""`shrinkflow export models:/NAME@ALIAS|/VERSION --format onnx -o DIR`: a registered version's deployable files."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows import runtime
from flows.console import RootOption, console, fail

MODEL_URI = re.compile(r"^models:/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


class Format(StrEnum):
    ONNX = "onnx"


def parse_uri(uri: str) -> tuple[str, str | None, int | None]:
    """(name, alias, version) from models:/NAME@ALIAS or models:/NAME/VERSION; ValueError otherwise."""
    match = MODEL_URI.match(uri)
    if not match:
        raise ValueError(f"{uri!r} is not a model URI: use models:/NAME@ALIAS or models:/NAME/VERSION")
    version = match["version"]
    return match["name"], match["alias"], int(version) if version is not None else None


def export(
    uri: Annotated[str, typer.Argument(help="models:/NAME@ALIAS (e.g. @champion) or models:/NAME/VERSION")],
    out: Annotated[Path, typer.Option("-o", "--out", help="folder to write the files to")],
    format_: Annotated[Format, typer.Option("--format", help="artifact format")] = Format.ONNX,
    root: RootOption = Path("."),
) -> None:
    """Write the deployable files of a registered model version, each checked against its recorded sha256."""
    try:
        name, alias, version = parse_uri(uri)
    except ValueError as err:
        fail(str(err))
    runtime.prepare(root)
    from mlflow.exceptions import MlflowException

    from steps import tracking
    from steps.names import Tag

    tracking.use_store(root.resolve())
    try:
        mv = tracking.resolve_version(name, alias=alias, version=version)
        files = tracking.download_deployable(mv, out)
    except MlflowException as err:
        fail(f"{uri}: {err.message}")
    except ValueError as err:
        fail(str(err), code=1)
    deployable = mv.tags.get(Tag.DEPLOYABLE)
    listing = Table(title=f"{name} version {mv.version} ({format_}) -> {out}")
    for column in ("file", "sha256", "deployable"):
        listing.add_column(column)
    for file, digest in files.items():
        listing.add_row(file, digest, "yes" if file == deployable else "")
    console.print(listing)
