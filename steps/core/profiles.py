"""Profiles: where the pipeline's state lives, and what each one needs from the environment.

- `local` (default): everything embedded in the project (SQLite MLflow store, Prefect's ephemeral
  server, the DVC remote of `.dvc/config`). Needs nothing.
- `services`: an MLflow tracking server (PostgreSQL + S3 artifacts), a Prefect server and a DVC
  remote on S3-compatible storage with its own endpoint (MinIO, as in infra/compose.yaml).
- `production`: the same on AWS S3 itself: no endpoint needed, credentials may come from boto3's
  usual chain (instance role, ~/.aws) instead of the environment.

The profile is chosen by `--profile`, else `SHRINKFLOW_PROFILE`, else params.yaml `profile:`.
Endpoints, bucket and credentials come only from environment variables, never from committed
files; `describe()` and everything printed show URLs without credentials and never a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from steps import config
from steps.core.layout import PARAMS_FILE

PROFILE_ENV = "SHRINKFLOW_PROFILE"
DVC_REMOTE_ENV = "SHRINKFLOW_DVC_REMOTE"
"""The S3 URL of the DVC remote, e.g. s3://shrinkflow/dvc."""
S3_ENDPOINT_ENVS = ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
"""The S3 endpoint for DVC and `doctor`; the first one set wins (boto3 itself reads AWS_ENDPOINT_URL)."""
CREDENTIAL_ENVS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
DVC_REMOTE_NAME = "s3"
"""The remote the services profiles push to, written to DVC's local (git-ignored) config."""


@dataclass(frozen=True)
class Profile:
    name: str
    required: tuple[str, ...]
    """Environment variables that must be set (an endpoint group counts as set when any member is)."""
    needs_endpoint: bool = False

    @property
    def uses_services(self) -> bool:
        return self.name != "local"


PROFILES = {
    "local": Profile("local", ()),
    "services": Profile("services", ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", DVC_REMOTE_ENV, *CREDENTIAL_ENVS),
                        needs_endpoint=True),
    "production": Profile("production", ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", DVC_REMOTE_ENV)),
}
assert set(PROFILES) == set(config.PROFILES)


class ProfileError(ValueError):
    """The chosen profile is unknown or its environment is incomplete; the message names what."""


def select(root: Path, cli: str | None = None, env: Mapping[str, str] = os.environ) -> tuple[Profile, str]:
    """The profile to use and where the choice came from: --profile, then the environment, then params.yaml."""
    for value, source in ((cli, "--profile"), (env.get(PROFILE_ENV), PROFILE_ENV)):
        if value:
            if value not in PROFILES:
                raise ProfileError(f"{source}={value!r}: unknown profile; choose one of {', '.join(PROFILES)}")
            return PROFILES[value], source
    return PROFILES[config.load(root).profile], f"{Path(root) / PARAMS_FILE} profile:"


def missing(profile: Profile, env: Mapping[str, str] = os.environ) -> list[str]:
    """The environment variables the profile needs and does not have."""
    gaps = [name for name in profile.required if not env.get(name)]
    if profile.needs_endpoint and not s3_endpoint(env):
        gaps.append(" or ".join(S3_ENDPOINT_ENVS))
    return gaps


def require(profile: Profile, env: Mapping[str, str] = os.environ) -> None:
    gaps = missing(profile, env)
    if gaps:
        raise ProfileError(f"profile '{profile.name}' needs these environment variables: {', '.join(gaps)} "
                           "(see infra/README.md)")


def s3_endpoint(env: Mapping[str, str] = os.environ) -> str | None:
    return next((env[name] for name in S3_ENDPOINT_ENVS if env.get(name)), None)


def dvc_remote_url(env: Mapping[str, str] = os.environ) -> str:
    """The S3 URL of the DVC remote; ProfileError unless it is s3://bucket[/prefix]."""
    url = env.get(DVC_REMOTE_ENV, "")
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ProfileError(f"{DVC_REMOTE_ENV}={url!r}: expected s3://<bucket>/<prefix>, e.g. s3://shrinkflow/dvc")
    return url


def bucket(remote_url: str) -> str:
    return urlsplit(remote_url).netloc


def redact(url: str) -> str:
    """`url` without user and password: URLs may carry credentials (http://user:token@host)."""
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
