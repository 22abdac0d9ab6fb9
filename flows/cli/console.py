"""What every `shrinkflow` command shares: the consoles, the --root option and one-line failures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

console = Console(width=160) if not Console().is_terminal else Console()
err_console = Console(stderr=True, soft_wrap=True)  # a long path must stay one word

RootOption = Annotated[Path, typer.Option("--root", help="project root (holds params.yaml)")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: <message>` on stderr and exit with `code` (2: bad input, 1: a failed run)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
