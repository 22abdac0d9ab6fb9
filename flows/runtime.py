"""Process environment for the embedded (local) profile, set before Prefect is imported.

Prefect reads its settings at import time, so the CLI and the tests call `prepare(root)` first.
Values already in the environment win: the services profile points PREFECT_API_URL and
MLFLOW_TRACKING_URI at real servers.

A new checkout's first run starts Prefect's temporary server on an empty SQLite database, which it
must migrate first: most of that server's start-up (12.9 s of 17 s on this 2-core machine under
load; 5.4 s when the database is already migrated). `make install` migrates one empty database per
Prefect version into the virtual environment (`python -m flows.runtime`), and `prepare` copies it
into a Prefect home that has none yet, so a clean checkout starts on a migrated database.

The temporary server itself (flows/prefect_server.py) is started by `temporary_api()` at the start of
`shrinkflow run` and `shrinkflow sweep`, before this process imports Prefect, instead of by Prefect's client at its first request: its start-up
(its own imports, opening the database, registering block types) then overlaps this process's
imports, and this process never imports Prefect's server code (about 2 s on this machine).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from importlib import metadata
from pathlib import Path

from flows import prefect_server
from steps.core import environment
from steps.core.layout import STATE_DIR

DATABASE = "prefect.db"
"""The file Prefect's default connection URL (sqlite under PREFECT_HOME) names."""
_DATABASE_URL_SETTINGS = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")


def template_path() -> Path:
    """The migrated empty database for the installed Prefect (its schema changes between versions)."""
    return Path(sys.prefix) / "share" / "shrinkflow" / f"prefect-{metadata.version('prefect')}.db"


def prepare(root: Path) -> None:
    environment.apply_defaults()
    os.environ.setdefault("PREFECT_HOME", str(Path(root).resolve() / STATE_DIR / "prefect"))
    # Prefect's SQLite database cannot be created in a folder that does not exist.
    home = Path(os.environ["PREFECT_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    seed_home(home)


def seed_home(home: Path) -> bool:
    """Copy the migrated template into `home` when it has no database and Prefect would use the default
    SQLite file there (not a configured database, e.g. the services profile's PostgreSQL)."""
    target, template = home / DATABASE, template_path()
    if target.exists() or not template.is_file() or any(os.environ.get(k) for k in _DATABASE_URL_SETTINGS):
        return False
    fd, tmp = tempfile.mkstemp(prefix=f".{DATABASE}.", dir=home)
    os.close(fd)
    try:
        shutil.copyfile(template, tmp)
        os.replace(tmp, target)  # a concurrent first start sees no file or a whole one
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def temporary_api() -> Iterator[prefect_server.ServerProcess | None]:
    """When no Prefect API is configured (the local profile), start Prefect's temporary server now and point
    PREFECT_API_URL at it, before Prefect is imported; yields it (call `wait_until_ready` before the first
    flow), or None when PREFECT_API_URL is already set (a real server). Call after `prepare`. Like the
    profiles (steps/core/profiles.py), it reads the API address from the environment only, not from a Prefect
    profile file."""
    if os.environ.get("PREFECT_API_URL"):
        yield None
        return
    if "prefect" in sys.modules:
        raise RuntimeError("temporary_api() must run before Prefect is imported: it reads PREFECT_API_URL once")
    server = prefect_server.temporary(Path(os.environ["PREFECT_HOME"]))
    # Stopped at exit, after Prefect's log and event workers have drained (they drain in threading's exit hooks,
    # which run before atexit's); stopping it when the flow returns would leave them retrying a closed port.
    atexit.register(server.stop)
    # No UI is served and the server is gone after the run: no "View at <url>" link to a page that isn't there
    # (Prefect derives the UI address from PREFECT_API_URL unless PREFECT_UI_URL is set).
    added = {"PREFECT_API_URL": server.url, **({} if "PREFECT_UI_URL" in os.environ else {"PREFECT_UI_URL": ""})}
    os.environ.update(added)
    try:
        yield server
    finally:
        for key in added:
            os.environ.pop(key, None)


def build_template() -> Path:
    """Migrate an empty database in a scratch home (`prefect server database upgrade`) and keep it, as one
    file (SQLite's backup API folds the write-ahead log in), at template_path()."""
    out = template_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shrinkflow-prefect-") as scratch:
        env = {k: v for k, v in os.environ.items() if k not in _DATABASE_URL_SETTINGS} | {"PREFECT_HOME": scratch}
        subprocess.run([sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"], env=env,
                       check=True, capture_output=True, text=True)
        tmp = Path(scratch) / "template.db"
        with closing(sqlite3.connect(Path(scratch) / DATABASE)) as source, closing(sqlite3.connect(tmp)) as copy:
            source.backup(copy)
        shutil.move(tmp, out)
    return out


if __name__ == "__main__":
    print(f"migrated Prefect database template: {build_template()}")
