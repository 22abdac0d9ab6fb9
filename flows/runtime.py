"""Process environment for the embedded (local) profile, set before Prefect is imported.

Prefect reads its settings at import time, so the CLI and the tests call `prepare(root)` first.
Values already in the environment win: the services profile points PREFECT_API_URL and
MLFLOW_TRACKING_URI at real servers.

A new checkout's first run starts Prefect's temporary server on an empty SQLite database, which it
must migrate first: most of that server's start-up (12.9 s of 17 s on this 2-core machine under
load; 5.4 s when the database is already migrated). `make install` migrates one empty database per
Prefect version into the virtual environment (`python -m flows.runtime`), and `prepare` copies it
into a Prefect home that has none yet, so a clean checkout starts on a migrated database.

The temporary server itself is started by `temporary_api()` at the start of `shrinkflow run`, before
this process imports Prefect, instead of by Prefect's client at its first request: its start-up
(its own imports, opening the database, registering block types) then overlaps this process's
imports, and this process never imports Prefect's server code (about 2 s on this machine).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from importlib import metadata
from pathlib import Path

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


STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


class ServerStartFailed(RuntimeError):
    """Prefect's temporary server exited or did not answer in time; the message has the tail of its log."""


class TemporaryServer:
    """Prefect's temporary API server as its client would start it (`uvicorn --factory
    prefect.server.api.server:create_app`, UI and background services off), started by us.

    The listening socket is bound here and handed to uvicorn (`--fd`), so the port is known at once and
    no other process can take it between choosing and binding. On Linux the server gets SIGTERM when
    this process dies, even by SIGKILL (no orphaned server). Its output goes to a log in the Prefect home.
    """

    ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    """What Prefect's own SubprocessASGIServer sets: no UI, no scheduler or other background services."""

    def __init__(self, home: Path) -> None:
        self.log = home / "temporary-server.log"
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
        with listener, open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                 "--fd", str(listener.fileno()), "--log-level", "error", "--lifespan", "on"],
                env={**os.environ, **self.ENV, "PREFECT_HOME": str(home)}, pass_fds=(listener.fileno(),),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with(os.getpid()))

    def wait_until_ready(self, timeout_s: float | None = None) -> None:
        """Until /api/health answers; by default as long as Prefect waits for its own temporary server."""
        if timeout_s is None:
            timeout_s = float(os.environ.get(STARTUP_TIMEOUT, environment.DEFAULTS[STARTUP_TIMEOUT]))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartFailed(f"Prefect's temporary server exited with code {self.process.returncode}: "
                                        f"{self._log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.05)
        raise ServerStartFailed(f"Prefect's temporary server at {self.url} did not answer within {timeout_s:g} s "
                                f"({STARTUP_TIMEOUT}): {self._log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _log_tail(self) -> str:
        text = self.log.read_text(errors="replace").strip() if self.log.is_file() else ""
        return text[-2000:] or f"(nothing in {self.log})"


def _die_with(parent: int):
    """For the child between fork and exec: SIGTERM when `parent` dies (Linux prctl PR_SET_PDEATHSIG, resolved
    here, in the parent; elsewhere nothing). A parent that died before the prctl took effect is caught by
    comparing the child's parent pid afterwards."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def in_child() -> None:
        prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return in_child


@contextlib.contextmanager
def temporary_api() -> Iterator[TemporaryServer | None]:
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
    server = TemporaryServer(Path(os.environ["PREFECT_HOME"]))
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
