"""Process environment for the embedded (local) profile, set before Prefect is imported.

Prefect reads its settings at import time, so the CLI and the tests call `prepare(root)` first.
Values already in the environment win: the services profile points PREFECT_API_URL and
MLFLOW_TRACKING_URI at real servers.
"""

from __future__ import annotations

import os
from pathlib import Path

from steps.core import environment
from steps.core.layout import STATE_DIR


def prepare(root: Path) -> None:
    environment.apply_defaults()
    os.environ.setdefault("PREFECT_HOME", str(Path(root).resolve() / STATE_DIR / "prefect"))
    # Prefect's SQLite database cannot be created in a folder that does not exist.
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
