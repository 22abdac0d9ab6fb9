"""The local MLflow store (`mlflow.db`), read with sqlite3 alone, for questions asked before MLflow is imported.

The no-change check of `shrinkflow run` must answer "is the registered version still there?" in
milliseconds; importing MLflow takes over a second. This reads MLflow's own `model_versions` table
(the schema MLflow's SQLAlchemy store creates); anything else goes through MLflow.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from steps.core.sqlite import check_database

DB_FILE = "mlflow.db"
HOLDS = "this project's MLflow runs, its model registry (versions and aliases) and the promotion history"
ADVICE = ("Restore it from a backup, or run against a tracking server (--profile services); moving it aside "
          "(mv mlflow.db mlflow.db.corrupt) starts an empty registry.")


def local_uri(root: Path) -> str:
    return f"sqlite:///{Path(root).resolve() / DB_FILE}"


def check_store(db: Path) -> None:
    """CorruptDatabase naming `db`, what is in it and what to do, when the file is damaged."""
    check_database(db, HOLDS, ADVICE)


def version_exists(db: Path, name: str, version: int) -> bool:
    """Whether model `name` has version `version` in the local store at `db` (False when there is no store)."""
    if not Path(db).is_file():
        return False
    check_store(db)
    with sqlite3.connect(f"file:{Path(db).resolve()}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT 1 FROM model_versions WHERE name = ? AND version = ? AND current_stage != ?",
                           (name, version, "Deleted_Internal")).fetchone()
    return row is not None
