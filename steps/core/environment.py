"""The process environment the outside libraries read at import time: one list of defaults.

MLflow, Prefect and DVC take settings from environment variables when they are imported, so
these are applied before any of them is (the tracking and storage doors call `apply_defaults`,
the CLI and the tests `flows.runtime.prepare`). A value already in the environment wins.
"""

from __future__ import annotations

import os

DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # A tracking server that is down should fail the stage in seconds, not after MLflow's default
    # of 7 retries with exponential backoff (minutes); transient blips still get retried.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The first start of the ephemeral server migrates a fresh SQLite DB; slow on a busy 2-core box.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_LOGGING_LOG_PRINTS": "true",
}


def apply_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
