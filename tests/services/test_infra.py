"""infra/compose.yaml cannot run here (no docker engine): check that it agrees with the code and with the
servers the services-profile tests start (commands, ports, variables, bucket, database drivers)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from flows.prefect_server import server_start_args
from steps.core import profiles
from tests.helpers import REPO
from tests.servers import mlflow_server_args

INFRA = REPO / "infra"


def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


EXAMPLE = env_file(INFRA / "shrinkflow.env.example")


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, taking values from the example env file."""
    if isinstance(value, str):
        def one(match: re.Match) -> str:
            name, op, default = match.group(1), match.group(2) or "", match.group(3) or ""
            if name in env:
                return env[name]
            assert op != ":?", f"${{{name}}} is required but not in shrinkflow.env.example"
            return default
        return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", one, value).replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def services() -> dict:
    return interpolate(yaml.safe_load((INFRA / "compose.yaml").read_text())["services"], EXAMPLE)


def published(service: dict) -> set[int]:
    return {int(str(p).split(":")[0]) for p in service.get("ports", [])}


def flags(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("--")]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_every_service_is_there(services):
    assert set(services) == {"minio", "minio-init", "postgres", "mlflow", "prefect-server", "prefect-worker"}


def test_example_env_is_a_complete_services_profile():
    assert profiles.missing(profiles.PROFILES["services"], EXAMPLE) == []
    assert EXAMPLE[profiles.PROFILE_ENV] == "services"
    assert profiles.bucket(profiles.dvc_remote_url(EXAMPLE)) == EXAMPLE["SHRINKFLOW_BUCKET"]
    assert all("change-me" in EXAMPLE[k] for k in ("AWS_SECRET_ACCESS_KEY", "POSTGRES_PASSWORD"))


def test_client_urls_reach_published_ports(services):
    assert urlsplit(EXAMPLE["AWS_ENDPOINT_URL"]).port in published(services["minio"])
    assert urlsplit(EXAMPLE["MLFLOW_TRACKING_URI"]).port in published(services["mlflow"])
    prefect = urlsplit(EXAMPLE["PREFECT_API_URL"])
    assert prefect.port in published(services["prefect-server"]) and prefect.path == "/api"


def test_mlflow_server_runs_as_in_the_tests(services):
    argv = services["mlflow"]["command"]
    assert argv[:2] == ["mlflow", "server"]
    assert flags(argv) == flags(mlflow_server_args("h", 1, "b", "a"))
    assert int(option(argv, "--port")) in published(services["mlflow"])
    store = urlsplit(option(argv, "--backend-store-uri"))
    assert store.scheme == "postgresql+psycopg" and store.hostname == "postgres" and store.path == "/mlflow"
    assert option(argv, "--artifacts-destination") == f"s3://{EXAMPLE['SHRINKFLOW_BUCKET']}/mlflow"
    env = services["mlflow"]["environment"]
    assert urlsplit(env["MLFLOW_S3_ENDPOINT_URL"]).hostname == "minio"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)


def test_prefect_server_and_worker(services):
    argv = services["prefect-server"]["command"]
    assert argv[:3] == ["prefect", "server", "start"] and flags(argv) == flags(server_start_args("h", 1))
    assert int(option(argv, "--port")) in published(services["prefect-server"])
    database = urlsplit(services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert database.scheme == "postgresql+asyncpg" and database.path == "/prefect"
    worker = services["prefect-worker"]
    assert worker["command"][:3] == ["prefect", "worker", "start"] and option(worker["command"], "--type") == "process"
    env = worker["environment"]
    assert profiles.missing(profiles.PROFILES["services"], env) == []
    assert env[profiles.PROFILE_ENV] == "services"
    assert urlsplit(env["PREFECT_API_URL"]).hostname == "prefect-server"
    assert urlsplit(env["MLFLOW_TRACKING_URI"]).hostname == "mlflow"
    assert env[profiles.DVC_REMOTE_ENV] == EXAMPLE[profiles.DVC_REMOTE_ENV]


def test_postgres_creates_both_databases_and_minio_the_bucket(services):
    init = (INFRA / "postgres-init.sql").read_text()
    assert "CREATE DATABASE mlflow;" in init and "CREATE DATABASE prefect;" in init
    mount = next(v for v in services["postgres"]["volumes"] if "postgres-init.sql" in v)
    assert mount.split(":")[1].startswith("/docker-entrypoint-initdb.d/")
    init_bucket = services["minio-init"]
    assert init_bucket["environment"]["SHRINKFLOW_BUCKET"] == EXAMPLE["SHRINKFLOW_BUCKET"]
    assert "mc mb --ignore-existing" in init_bucket["command"][0]


def test_no_secret_is_committed():
    """Credentials come from infra/.env (git-ignored), never from the compose file itself."""
    text = (INFRA / "compose.yaml").read_text()
    for key in ("AWS_SECRET_ACCESS_KEY", "POSTGRES_PASSWORD"):
        assert EXAMPLE[key] not in text
    assert "infra/.env" in (REPO / ".gitignore").read_text().split()
