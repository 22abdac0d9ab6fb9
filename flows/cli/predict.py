"""`shrinkflow predict models:/NAME@ALIAS INPUT -o OUTPUT`: score raw inputs with a registered model, in batches.

The glue only: steps/scoring reads the input (steps/scoring/readers.py says which inputs and ids), scores
and names refused rows (batch.py), and writes OUTPUT whole or not at all (writer.py); steps/tracking loads
the model. Exit status 0 when OUTPUT was written (rows skipped with --on-error skip are listed in
OUTPUT.errors.csv), 2 when the model, the input or a row is refused, 1 when OUTPUT cannot be written.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.cli.console import RootOption, console, err_console, fail

LISTED_ERRORS = 20  # printed; the errors file holds them all


class OnError(StrEnum):
    SKIP = "skip"
    FAIL = "fail"


def predict(
    uri: Annotated[str, typer.Argument(
        metavar="MODEL", help="models:/NAME@ALIAS (e.g. @champion) or models:/NAME/VERSION")],
    input_path: Annotated[Path, typer.Argument(
        metavar="INPUT", help="a folder of images (searched recursively), *-idx3-ubyte[.gz], .npz, .parquet/.pq, "
                              ".csv or .jsonl (a table: the model's feature columns or its text column)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="the scores file: .parquet, .pq or .csv")],
    batch_size: Annotated[int, typer.Option(min=1, help="rows read and scored at a time")] = 256,
    on_error: Annotated[OnError, typer.Option(
        help="an unreadable or refused row: fail (write nothing) or skip it (listed in OUTPUT.errors.csv)")
    ] = OnError.FAIL,
    id_column: Annotated[str | None, typer.Option(help="a table's column to use as the id (default: row index)")
                         ] = None,
    root: RootOption = Path("."),
) -> None:
    """Score INPUT with a registered model: OUTPUT gets each row's id, label, class_index and class probabilities."""
    from steps import tracking
    from steps.core.files import OutputWriteError
    from steps.scoring import batch, readers, writer
    from steps.scoring.contract import ContractMissing, from_metadata
    from steps.sources.base import DataError

    try:
        ref = tracking.ModelRef.parse(uri)
        writer.output_format(out)
    except ValueError as err:
        fail(str(err))
    if not input_path.exists():  # before the model loads (seconds)
        fail(f"{input_path}: no such file or folder")
    tracking.use_store(root.resolve())
    try:
        version = ref.resolve()
        scorer = tracking.load_scorer(ref.name, version)
        contract = from_metadata(scorer.metadata, f"{uri} (version {version})")
        source = readers.open_input(input_path, contract, batch_size, id_column)
    except (tracking.UnknownModel, ContractMissing, DataError) as err:
        fail(str(err))
    try:
        with _progress() as bar, writer.ScoresWriter(out) as sink:
            task = bar.add_task(f"scoring {source.path.name}", total=source.total)
            outcome = batch.score(source, scorer.predict, tracking.BadInput, sink, on_error.value,
                                  advance=lambda rows: bar.advance(task, rows))
            if outcome.scored == 0:
                _list_errors(out, outcome.errors)
                fail(f"{input_path}: no row could be scored; nothing written to {out}")
            sink.commit()
    except (DataError, batch.InputRefused) as err:
        fail(f"{err}; nothing written to {out}")
    except OutputWriteError as err:
        fail(str(err), code=1)
    _list_errors(out, outcome.errors)
    skipped = f", {len(outcome.errors)} skipped" if outcome.errors else ""
    console.print(f"{uri} (version {version}) scored {outcome.scored} rows of {source.what}{skipped} -> {out}",
                  highlight=False)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True)


def _list_errors(out: Path, errors: list) -> None:
    """Print the rows not scored (the first LISTED_ERRORS) and list them all beside the output."""
    from steps.scoring import writer

    listed = writer.write_errors(out, errors)
    if listed is None:
        return
    table = Table(title=f"{len(errors)} rows not scored (all listed in {listed})", title_justify="left")
    table.add_column("id")
    table.add_column("why")
    for row, why in errors[:LISTED_ERRORS]:
        table.add_row(str(row), why)
    if len(errors) > LISTED_ERRORS:
        table.add_row("...", f"and {len(errors) - LISTED_ERRORS} more")
    err_console.print(table)
