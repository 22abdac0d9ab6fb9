"""SQLite files the pipeline keeps (MLflow's local store, Prefect's home): refuse a corrupt one by name."""

from __future__ import annotations

import sqlite3
from pathlib import Path

_healthy: set[Path] = set()  # checked in this process


class CorruptDatabase(RuntimeError):
    """A SQLite file is damaged (truncated, overwritten); the message names it, what lives in it, what to do."""


def check_database(path: Path, holds: str, advice: str) -> None:
    """Raise CorruptDatabase unless `path` is missing (created on first use) or passes SQLite's quick_check.

    `holds` says what lives in the file and `advice` what to do, both for the message. Checked once per
    process: quick_check reads the whole file, which costs milliseconds for these sizes.
    """
    path = Path(path).resolve()
    if path in _healthy or not path.is_file():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as err:
        verdict = str(err)
    if verdict != "ok":
        raise CorruptDatabase(f"{path} is not a healthy SQLite database ({verdict}); it holds {holds}. {advice}")
    _healthy.add(path)
