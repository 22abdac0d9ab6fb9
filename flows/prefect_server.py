"""Servers as child processes of ours: the one starter behind `shrinkflow run` and `shrinkflow sweep` (Prefect's
temporary API), the tests' servers (Prefect and MLflow) and the overhead benchmark's Prefect server.

Two Prefect servers: `temporary(home)`, the API Prefect's own client would start for one command (no UI, no
scheduler or other background services), and `full(home)`, `prefect server start` as infra/compose.yaml runs it
(with its scheduler: what `prefect serve` and deployments need).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from steps.core import environment

STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
TEMPORARY_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
"""What Prefect's own SubprocessASGIServer sets: no UI, no scheduler or other background services."""
FULL_ENV = {"PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": ""}
"""No UI and no analytics; PREFECT_API_URL empty so that the server never takes itself for a client of another."""


class ServerStartFailed(RuntimeError):
    """A server exited or did not answer in time; the message has the tail of its log."""


class ServerProcess:
    """A server as a child process: in its own process group (servers spawn workers, and a terminal's Ctrl-C reaches
    only the command, which stops the server itself once Prefect has recorded the interruption), SIGTERM when this
    process dies even by SIGKILL (Linux: no orphaned server), output in `log`."""

    def __init__(self, name: str, argv: list[str], url: str, log: Path, env: dict[str, str],
                 pass_fds: tuple[int, ...] = ()) -> None:
        self.name, self.url, self.log = name, url, log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                argv, env={**os.environ, **env}, pass_fds=pass_fds, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with(os.getpid()))

    def wait_until_ready(self, timeout_s: float | None = None, health: str = "/health") -> None:
        """Until `url + health` answers 200; by default as long as Prefect waits for its own temporary server."""
        setting = f" ({STARTUP_TIMEOUT})" if timeout_s is None else ""
        if timeout_s is None:
            timeout_s = float(os.environ.get(STARTUP_TIMEOUT, environment.DEFAULTS[STARTUP_TIMEOUT]))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartFailed(f"{self.name} exited with code {self.process.returncode}: {self._log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + health, timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.05)  # polling interval, bounded by the deadline
        raise ServerStartFailed(f"{self.name} at {self.url} did not answer within {timeout_s:g} s{setting}: "
                                f"{self._log_tail()}")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL what remains after 20 s."""
        if self.process.poll() is not None:
            return
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def _log_tail(self) -> str:
        text = self.log.read_text(errors="replace").strip() if self.log.is_file() else ""
        return text[-3000:] or f"(nothing in {self.log})"


def temporary(home: Path) -> ServerProcess:
    """Prefect's temporary API as its client would start it (`uvicorn --factory prefect.server.api.server:create_app`),
    on PREFECT_HOME `home`. The listening socket is bound here and handed to uvicorn (`--fd`): the port is known at
    once and no other process can take it between choosing and binding."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    with listener:
        return ServerProcess(
            "Prefect's temporary server",
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
             "--fd", str(listener.fileno()), "--log-level", "error", "--lifespan", "on"],
            f"http://127.0.0.1:{listener.getsockname()[1]}/api", home / "temporary-server.log",
            {**TEMPORARY_ENV, "PREFECT_HOME": str(home)}, pass_fds=(listener.fileno(),))


def server_start_args(host: str, port: int) -> list[str]:
    """How the services profile's Prefect server runs, here and in infra/compose.yaml (a test compares them)."""
    return ["server", "start", "--host", host, "--port", str(port)]


def full(home: Path, database_url: str | None = None) -> ServerProcess:
    """`prefect server start` on PREFECT_HOME `home` (default database: SQLite there), on a free loopback port."""
    home.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:  # `prefect server start` binds by number: a free one, released for it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**FULL_ENV, "PREFECT_HOME": str(home)}
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    return ServerProcess("prefect server start", [sys.executable, "-m", "prefect", *server_start_args("127.0.0.1", port)],
                         f"http://127.0.0.1:{port}/api", home / "prefect-server.log", env)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


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
