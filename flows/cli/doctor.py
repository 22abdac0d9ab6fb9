"""`shrinkflow doctor`: are the chosen profile's services there? One line per check.

The same checks run before `shrinkflow run` on a services profile, so a missing bucket or a
server that is down stops the run in seconds instead of after training. Lines name endpoints
and buckets, never credentials.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.console import RootOption, console, fail
from steps.core import profiles
from steps.core.profiles import Profile, ProfileError, redact

ProfileOption = Annotated[str | None, typer.Option(
    "--profile", help=f"local | services | production (default: ${profiles.PROFILE_ENV}, else params.yaml)")]
TIMEOUT_S = 5


class CheckFailed(RuntimeError):
    """One check did not pass; the message says what is wrong, in one line."""


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool | None  # None: skipped because a check it depends on failed
    message: str

    def line(self) -> str:
        status = {True: "[green]ok  [/]", False: "[red]FAIL[/]", None: "[yellow]skip[/]"}[self.ok]
        return f"{status}  {self.name:<8} {self.message}"


# --- the checks: each returns what it found, or raises CheckFailed ----------------------------------------------------


def check_env(profile: Profile) -> str:
    gaps = profiles.missing(profile)
    if gaps:
        raise CheckFailed(f"not set: {', '.join(gaps)} (see infra/README.md)")
    return "all set" if profile.required else "nothing needed"


def check_s3(profile: Profile) -> str:
    """The DVC remote's bucket exists and answers at the configured endpoint (boto3 HeadBucket)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        bucket = profiles.bucket(profiles.dvc_remote_url())
    except ProfileError as err:
        raise CheckFailed(str(err)) from None
    endpoint = profiles.s3_endpoint()
    where = f"S3 endpoint {redact(endpoint)}" if endpoint else "AWS S3"
    client = boto3.client("s3", endpoint_url=endpoint, config=Config(
        connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 1, "mode": "standard"}))
    try:
        client.head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise CheckFailed(f"{where}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") from None
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket"):
            raise CheckFailed(f"{where}: bucket '{bucket}' does not exist") from None
        if code in ("403", "AccessDenied"):
            raise CheckFailed(f"{where}: access to bucket '{bucket}' denied (check the credentials)") from None
        raise CheckFailed(f"{where}: bucket '{bucket}': {err}") from None
    except BotoCoreError as err:
        raise CheckFailed(f"{where} unreachable: {err}") from None
    return f"bucket '{bucket}' at {where}"


def check_mlflow(root: Path, profile: Profile) -> str:
    from steps import tracking

    uri = tracking.tracking_uri(root)
    if not profile.uses_services and uri.startswith("sqlite:"):
        return f"embedded store {uri}"
    if not uri.startswith(("http://", "https://")):
        raise CheckFailed(f"MLFLOW_TRACKING_URI={redact(uri)}: profile '{profile.name}' needs an MLflow server "
                          "(http:// or https://)")
    try:
        server_version = tracking.check_server(uri, timeout_s=TIMEOUT_S)
    except tracking.TrackingUnavailable as err:
        raise CheckFailed(str(err)) from None
    return f"server {redact(uri)} answers (MLflow {server_version})"


def check_prefect(profile: Profile) -> str:
    import httpx

    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return "ephemeral server (started by each run)"
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=TIMEOUT_S, headers=_prefect_auth())
        response.raise_for_status()
    except httpx.HTTPError as err:
        raise CheckFailed(f"Prefect API {redact(url)} does not answer: {err}") from None
    return f"API {redact(url)} answers"


def _prefect_auth() -> dict[str, str]:
    key = os.environ.get("PREFECT_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def check_dvc(root: Path, profile: Profile) -> str:
    from steps import storage

    try:
        remote = storage.use_profile(root, profile)
        return f"remote {storage.remote_description(root, remote)}"
    except (ProfileError, storage.StorageError) as err:
        raise CheckFailed(str(err)) from None


# --- running them -----------------------------------------------------------------------------------------------------


def checks(root: Path, profile: Profile) -> list[tuple[str, Callable[[], str], tuple[str, ...]]]:
    """(name, check, names of the checks it needs) in the order they are printed."""
    if not profile.uses_services:
        return [("mlflow", lambda: check_mlflow(root, profile), ()), ("prefect", lambda: check_prefect(profile), ()),
                ("dvc", lambda: check_dvc(root, profile), ())]
    return [
        ("env", lambda: check_env(profile), ()),
        ("s3", lambda: check_s3(profile), ("env",)),
        ("mlflow", lambda: check_mlflow(root, profile), ("env",)),
        ("prefect", lambda: check_prefect(profile), ("env",)),
        ("dvc", lambda: check_dvc(root, profile), ("env",)),
    ]


def diagnose(root: Path, profile: Profile) -> list[Result]:
    results: dict[str, Result] = {}
    for name, check, needs in checks(root, profile):
        failed = [n for n in needs if not results[n].ok]
        if failed:
            results[name] = Result(name, None, f"needs {', '.join(failed)}")
            continue
        try:
            results[name] = Result(name, True, check())
        except CheckFailed as err:
            results[name] = Result(name, False, str(err))
    return list(results.values())


def choose(root: Path, profile: str | None) -> tuple[Profile, str]:
    """The profile (CLI, environment, params.yaml), or exit 2 naming what is wrong."""
    from steps import config

    try:
        return profiles.select(root, profile)
    except (ProfileError, config.ConfigError) as err:
        fail(str(err))


def preflight(root: Path, profile: Profile) -> None:
    """Before a run on a services profile: every check passes, or exit 1 listing what failed."""
    if not profile.uses_services:
        return
    failures = [r for r in diagnose(root, profile) if r.ok is False]
    if failures:
        fail(f"profile '{profile.name}' is not ready (`shrinkflow doctor` checks it):\n"
             + "\n".join(f"  {r.name}: {r.message}" for r in failures), code=1)


def doctor(profile: ProfileOption = None, root: RootOption = Path(".")) -> None:
    """Check the chosen profile's services: S3 bucket, MLflow server, Prefect API, DVC remote."""
    root = root.resolve()
    chosen, source = choose(root, profile)
    console.print(f"profile: {chosen.name} (from {source})", highlight=False)
    results = diagnose(root, chosen)
    for result in results:
        console.print(result.line(), highlight=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)
