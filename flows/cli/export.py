"""`shrinkflow export models:/NAME@ALIAS|/VERSION --format onnx -o DIR`: a registered version's deployable files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows import runtime
from flows.cli.console import RootOption, console, fail


class Format(StrEnum):
    ONNX = "onnx"


def export(
    uri: Annotated[str, typer.Argument(help="models:/NAME@ALIAS (e.g. @champion) or models:/NAME/VERSION")],
    out: Annotated[Path, typer.Option("-o", "--out", help="folder to write the files to")],
    format_: Annotated[Format, typer.Option("--format", help="artifact format")] = Format.ONNX,
    root: RootOption = Path("."),
) -> None:
    """Write the deployable files of a registered model version, each checked against its recorded sha256."""
    runtime.prepare(root)
    from steps import tracking
    from steps.core.names import Tag

    try:
        ref = tracking.ModelRef.parse(uri)
    except ValueError as err:
        fail(str(err))
    tracking.use_store(root.resolve())
    try:
        mv = tracking.model_version(ref.name, ref.resolve())
        files = tracking.download_deployable(mv, out)
    except tracking.UnknownModel as err:
        fail(str(err))
    except ValueError as err:
        fail(str(err), code=1)
    name = ref.name
    deployable = mv.tags.get(Tag.DEPLOYABLE)
    listing = Table(title=f"{name} version {mv.version} ({format_}) -> {out}")
    for column in ("file", "sha256", "deployable"):
        listing.add_column(column)
    for file, digest in files.items():
        listing.add_row(file, digest, "yes" if file == deployable else "")
    console.print(listing)
