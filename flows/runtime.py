"""Process environment for the embedded (local) profile, set before Prefect is imported.

Prefect reads its settings at import time, so the CLI and the tests call
`prepare(root)` first. Values already in the environment win: the services
profile points PREFECT_API_URL and MLFLOW_TRACKING_URI at real servers.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR = ".shrinkflow"


def prepare(root: Path) -> None:
    state = Path(root).resolve() / STATE_DIR
    defaults = {
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The first start of the ephemeral server migrates a fresh SQLite DB; slow on a busy 2-core box.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LOG_PRINTS": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "DVC_NO_ANALYTICS": "1",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    # Prefect's SQLite database cannot be created in a folder that does not exist.
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
