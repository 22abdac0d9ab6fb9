"""Real services for tests, each started on a free loopback port and stopped afterwards.

- `s3_endpoint()`: moto's HTTP S3 server (no MinIO binary here; the dvc-s3 and s3fs suites do the same),
  which a test can stop, or arm to go down at the first request that matches (an outage mid-flow).
- `postgres_database()`: a fresh database on the machine's PostgreSQL, dropped afterwards; skipped with a
  message where PostgreSQL is absent, a failure under CI=true.
- `mlflow_server()`, `prefect_server()`: the real servers, started and stopped by flows/prefect_server.py's starter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.prefect_server import ServerProcess, full
from tests.helpers import BIN

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto's S3 app on a werkzeug server of our own, so an outage can be triggered by a request.

    `stop()` also closes the listening socket (moto's ThreadedMotoServer leaves it open, so
    clients would hang in the backlog instead of being refused, as by a server that is down).
    """

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request drowns test output
        self._app = DomainDispatcherApplication(create_backend_app)
        self._trigger = None
        self.went_down = threading.Event()
        self._server = make_server("127.0.0.1", 0, self._dispatch, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def go_down_on(self, trigger) -> None:
        """At the first request for which `trigger(environ)` is true: drop it and stop serving."""
        self._trigger = trigger

    def _dispatch(self, environ, start_response):
        trigger = self._trigger
        if trigger is not None and trigger(environ):
            self._trigger = None
            threading.Thread(target=self.stop, daemon=True).start()
            environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)  # the client sees the connection drop
            self.went_down.set()
            start_response("503 Service Unavailable", [])
            return [b""]
        return self._app(environ, start_response)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


@dataclass
class S3:
    endpoint: str
    server: MotoServer  # stop() it, or go_down_on(...), to simulate an outage

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
                            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this endpoint (DVC, MLflow and boto3 all read these)."""
        return {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "MLFLOW_S3_ENDPOINT_URL": self.endpoint}


@contextlib.contextmanager
def s3_endpoint(*buckets: str) -> Iterator[S3]:
    server = MotoServer()
    s3 = S3(server.endpoint, server)
    for bucket in buckets:
        s3.client().create_bucket(Bucket=bucket)
    try:
        yield s3
    finally:
        server.stop()


def _postgres_or_skip():
    """A connection to the maintenance database, or skip (fail under CI) naming what is missing."""
    import psycopg

    try:
        return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True,
                               connect_timeout=3)
    except psycopg.OperationalError as err:
        message = f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} as {PG_USER} ({err}); services tests need it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def postgres_database(prefix: str = "shrinkflow_test") -> Iterator[str]:
    """Create a uniquely named database; yields its name; drops it (and its connections) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with _postgres_or_skip() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with _postgres_or_skip() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_url(database: str, driver: str) -> str:
    return f"postgresql+{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def mlflow_server_args(host: str, port: int, backend_store_uri: str, artifacts_destination: str) -> list[str]:
    """How the services profile's MLflow server runs, here and in infra/compose.yaml (a test compares them)."""
    return ["server", "--host", host, "--port", str(port), "--backend-store-uri", backend_store_uri,
            "--artifacts-destination", artifacts_destination]


@contextlib.contextmanager
def serving(server: ServerProcess, timeout_s: float | None = None) -> Iterator[ServerProcess]:
    """`server` once healthy (else fail with its log), stopped afterwards."""
    try:
        server.wait_until_ready(timeout_s)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, artifacts_destination: str, workdir: Path,
                  env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """`mlflow server` proxying artifacts to `artifacts_destination` (clients never touch the bucket)."""
    port = free_port()
    argv = [str(BIN / "mlflow"), *mlflow_server_args("127.0.0.1", port, backend_store_uri, artifacts_destination),
            "--workers", "1"]
    server_env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                  "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    server = ServerProcess("mlflow server", argv, f"http://127.0.0.1:{port}", workdir / "mlflow-server.log", server_env)
    with serving(server, timeout_s=120) as s:
        yield s


@contextlib.contextmanager
def prefect_server(workdir: Path, database_url: str | None = None) -> Iterator[ServerProcess]:
    """`prefect server start` (with its scheduler, unlike the temporary one) on its own PREFECT_HOME."""
    with serving(full(workdir / "prefect-server-home", database_url)) as s:
        yield s


@contextlib.contextmanager
def scoring_server(root: Path, model: str, workdir: Path) -> Iterator[ServerProcess]:
    """`shrinkflow serve-model MODEL` for the project at `root`: MLflow's real scoring server. PATH holds only the
    system's folders, as for a user whose venv is not activated (MLflow starts uvicorn by name)."""
    port = free_port()
    argv = [str(BIN / "shrinkflow"), "serve-model", model, "--port", str(port), "--root", str(root)]
    env = {"PATH": "/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = ServerProcess("mlflow models serve", argv, f"http://127.0.0.1:{port}", workdir / "scoring.log", env)
    try:
        server.wait_until_ready(120, health="/ping")
        yield server
    finally:
        server.stop()
